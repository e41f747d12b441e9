// The driver's terminal: renders the agent's DriverState, live from /driver/events, and posts
// the driver's actions. Vanilla JS, no build step. Texts from dispatch are untrusted: they are
// only ever set with textContent.
'use strict';

(function () {
  // The page's texts, German and English: the words the passenger displays use, where they
  // say the same (onboard/display/static/display.js). The canned messages' labels come with
  // the state (label, label_de: onboard/driver/model.py).
  const TEXT = {
    de: {
      title: 'Fahrerterminal',
      trip: 'Fahrt',
      block: 'Umlauf',
      connecting: 'verbinde \u2026',
      online: 'online',
      offline: 'offline',
      queued: 'wartet',
      night: 'Nacht',
      day: 'Tag',
      next_stop: 'Nächster Halt',
      at_stop: 'Am Halt',
      finished: 'Fahrt beendet',
      no_trip: 'Keine Fahrt',
      early: 'zu früh',
      on_time: 'pünktlich',
      late: 'verspätet',
      very_late: 'stark verspätet',
      unknown: '',
      off_route: 'Abweichung von der Route',
      diversion: 'Umleitung',
      later_stops: 'Weitere Halte',
      map: 'Strecke voraus',
      waiting: 'Warte auf die Position auf der Route',
      dispatch: 'Leitstelle',
      unacked: ' offen',
      sent: 'Gesendet',
      acknowledge: 'Bestätigen',
      acknowledged: 'bestätigt',
      canned: 'An die Leitstelle',
      tap_again: 'Nochmals tippen: ',
      emergency: 'Notruf: 2 s halten',
    },
    en: {
      title: 'Driver terminal',
      trip: 'Trip',
      block: 'Block',
      connecting: 'connecting',
      online: 'online',
      offline: 'offline',
      queued: 'queued',
      night: 'Night',
      day: 'Day',
      next_stop: 'Next stop',
      at_stop: 'At stop',
      finished: 'Trip finished',
      no_trip: 'No trip',
      early: 'early',
      on_time: 'on time',
      late: 'late',
      very_late: 'very late',
      unknown: '',
      off_route: 'Off route',
      diversion: 'Diversion',
      later_stops: 'Further stops',
      map: 'Path ahead',
      waiting: 'Waiting for the position on the route',
      dispatch: 'Dispatch',
      unacked: ' open',
      sent: 'Sent',
      acknowledge: 'Acknowledge',
      acknowledged: 'acknowledged',
      canned: 'To dispatch',
      tap_again: 'Tap again: ',
      emergency: 'Hold 2 s: emergency',
    },
  };
  const HOLD_MS = 2000; // the emergency button needs a deliberate 2 s hold
  const ARM_MS = 4000; // a canned message needs a second tap within this time
  const SVG = 'http://www.w3.org/2000/svg';

  // The language: the kiosk URL's ?lang=de | en if given, else the first of the agent's
  // display.language (German first), which comes with every state and changes live.
  const known = (list) =>
    (Array.isArray(list) ? list : [])
      .map((s) => String(s).trim())
      .filter((s) => Object.prototype.hasOwnProperty.call(TEXT, s));
  const asked = new URLSearchParams(window.location.search).get('lang');
  const urlLang = asked ? known(asked.split(','))[0] || null : null;
  let lang = urlLang || 'de';
  const t = () => TEXT[lang];

  const el = (id) => document.getElementById(id);
  let state = null;
  let cannedCodes = '';
  let messagesKey = '';
  let sentKey = '';
  const disarmers = [];
  let emergencySending = false;

  // -- helpers ---------------------------------------------------------------------------
  function setText(id, text) {
    const node = el(id);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function pad(n) {
    return (n < 10 ? '0' : '') + n;
  }

  function hhmm(t) {
    const d = new Date(t * 1000);
    return pad(d.getHours()) + ':' + pad(d.getMinutes());
  }

  function nonce() {
    return Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 12);
  }

  function li(className) {
    const node = document.createElement('li');
    if (className) node.className = className;
    return node;
  }

  function span(className, text) {
    const node = document.createElement('span');
    node.className = className;
    node.textContent = text;
    return node;
  }

  // POST JSON to the agent; retried while the agent cannot be reached (same id: sent once).
  async function post(path, body, attempts) {
    for (let i = 0; i < attempts; i++) {
      try {
        const response = await fetch(path, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
          cache: 'no-store',
        });
        if (response.ok) return await response.json();
        if (response.status < 500) return null; // refused: retrying cannot help
      } catch (err) {
        // the agent is restarting or the screen's network hiccuped: try again
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    return null;
  }

  function labelOf(code) {
    const canned = ((state && state.canned) || []).find((c) => c.code === code);
    if (!canned) return code;
    return lang === 'de' && canned.label_de ? canned.label_de : canned.label;
  }

  function renderLabels() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll('[data-i18n]')) {
      const text = t()[node.dataset.i18n];
      if (typeof text === 'string' && node.textContent !== text) node.textContent = text;
    }
    for (const node of document.querySelectorAll('[data-i18n-label]')) {
      const text = t()[node.dataset.i18nLabel];
      if (typeof text === 'string' && node.getAttribute('aria-label') !== text) {
        node.setAttribute('aria-label', text);
      }
    }
    setText('theme', document.documentElement.dataset.theme === 'night' ? t().day : t().night);
    if (!state) {
      // Until the first state (render() fills these in from it).
      setText('uplink-text', t().connecting);
      setText('next-label', t().next_stop);
      setText('map-empty', t().waiting);
    }
  }

  function takeLanguage(s) {
    if (urlLang) return;
    const next = known(s.languages)[0] || 'de';
    if (next === lang) return;
    lang = next;
    renderLabels();
  }

  // -- theme -----------------------------------------------------------------------------
  function applyTheme(theme) {
    document.documentElement.dataset.theme = theme;
    el('theme').textContent = theme === 'night' ? t().day : t().night;
    try {
      window.localStorage.setItem('driverTheme', theme);
    } catch (err) {
      // a kiosk without storage: the theme lasts until the page reloads
    }
  }

  function initialTheme() {
    const asked = new URLSearchParams(window.location.search).get('theme');
    if (asked === 'day' || asked === 'night') return asked;
    try {
      const saved = window.localStorage.getItem('driverTheme');
      if (saved === 'day' || saved === 'night') return saved;
    } catch (err) {
      // no storage
    }
    return 'day';
  }

  // -- rendering -------------------------------------------------------------------------
  function renderJourney(s) {
    setText('line', s.line);
    setText('destination', s.destination);
    setText('trip', s.trip_id || '\u2013');
    setText('block', s.block_id || '\u2013');
    let label = s.at_stop ? t().at_stop : t().next_stop;
    if (s.finished) label = t().finished;
    if (!s.trip_id) label = t().no_trip;
    setText('next-label', label);
    setText('next-stop', s.finished ? '' : s.next_stop);
    const adherence = el('adherence');
    adherence.dataset.band = s.adherence;
    setText('adherence-text', s.adherence_text);
    const band = Object.prototype.hasOwnProperty.call(t(), s.adherence) ? t()[s.adherence] : '';
    setText('adherence-label', typeof band === 'string' ? band : '');
    el('off-route').hidden = s.on_route;
    el('diversion').hidden = !s.diversion;
    setText('diversion', s.diversion ? t().diversion + ': ' + s.diversion : '');
    const stops = el('stops');
    stops.replaceChildren(
      ...s.stops.map((stop) => {
        const row = li('');
        row.append(span('name', stop.name));
        const expected = stop.expected === null ? stop.scheduled : stop.expected;
        row.append(span('time', hhmm(expected)));
        return row;
      }),
    );
  }

  function renderMap(view) {
    const svg = el('map');
    const empty = el('map-empty');
    if (!view) {
      empty.hidden = false;
      empty.textContent = state.trip_id ? t().waiting : t().no_trip;
      el('path-behind').setAttribute('points', '');
      el('path-ahead').setAttribute('points', '');
      el('path-detour').setAttribute('points', '');
      el('map-stops').replaceChildren();
      el('bus').setAttribute('points', '');
      return;
    }
    empty.hidden = true;
    const [x, y, w, h] = view.extent;
    svg.setAttribute('viewBox', [x, y, w, h].join(' '));
    const points = (list) => list.map((p) => p[0] + ',' + p[1]).join(' ');
    el('path-behind').setAttribute('points', points(view.behind));
    el('path-ahead').setAttribute('points', points(view.ahead));
    el('path-detour').setAttribute('points', points(view.detour));
    const size = Math.max(w, h);
    const r = size / 70;
    const group = el('map-stops');
    group.replaceChildren();
    for (const stop of view.stops) {
      const dot = document.createElementNS(SVG, 'circle');
      dot.setAttribute('cx', stop.x);
      dot.setAttribute('cy', stop.y);
      dot.setAttribute('r', stop.next ? r * 1.4 : r);
      dot.setAttribute('class', stop.next ? 'map-stop next' : 'map-stop');
      const title = document.createElementNS(SVG, 'title');
      title.textContent = stop.name; // the next stop's name is big beside the map already
      dot.append(title);
      group.append(dot);
    }
    const s = size / 28;
    el('bus').setAttribute(
      'points',
      [
        [0, -s],
        [0.65 * s, 0.7 * s],
        [0, 0.35 * s],
        [-0.65 * s, 0.7 * s],
      ]
        .map((p) => p.join(','))
        .join(' '),
    );
  }

  function renderMessages(s) {
    // Rebuilt only when they change: a button replaced under the driver's finger loses the tap,
    // and the list is a live region (a screen reader reads what is new, once).
    renderSent(s);
    const key = JSON.stringify([lang, s.messages]);
    if (key === messagesKey) return;
    messagesKey = key;
    el('unacked').hidden = s.unacked === 0;
    setText('unacked-n', String(s.unacked));
    el('messages').replaceChildren(
      ...s.messages.map((m) => {
        const open = m.acked_t === null;
        const row = li(open ? 'open' : 'done');
        row.dataset.id = m.id;
        const text = span('text', m.text);
        text.id = 'message-' + m.id;
        row.append(text);
        let meta = hhmm(m.received_t);
        if (!open) meta += ' \u00b7 ' + t().acknowledged + ' ' + hhmm(m.acked_t);
        const metaNode = span('meta', meta);
        if (!open) {
          metaNode.append(
            span(m.ack_pending ? 'pending' : 'ok', m.ack_pending ? ' \u00b7 ' + t().queued : ' \u2713'),
          );
        }
        row.append(metaNode);
        if (open) {
          const button = document.createElement('button');
          button.type = 'button';
          button.className = 'ack';
          button.textContent = t().acknowledge;
          button.setAttribute('aria-describedby', 'message-' + m.id);
          button.addEventListener('click', () => {
            button.disabled = true;
            post('/driver/ack', { id: m.id }, 30);
          });
          row.append(button);
        }
        return row;
      }),
    );
  }

  function renderSent(s) {
    const key = JSON.stringify([lang, s.sent]);
    if (key === sentKey) return;
    sentKey = key;
    el('sent').replaceChildren(
      ...s.sent.map((item) => {
        const row = li(item.pending ? 'pending' : '');
        row.append(span('what', labelOf(item.code)));
        row.append(span('meta', hhmm(item.t) + (item.pending ? ' ' + t().queued : ' \u2713')));
        return row;
      }),
    );
  }

  function renderCanned(s) {
    const codes = lang + ':' + s.canned.map((c) => c.code).join(',');
    if (codes === cannedCodes) return;
    cannedCodes = codes;
    disarmers.length = 0;
    el('canned').replaceChildren(
      ...s.canned.map((c) => {
        const label = labelOf(c.code);
        const button = document.createElement('button');
        button.type = 'button';
        button.dataset.code = c.code;
        button.textContent = label;
        let armed = null;
        const disarm = () => {
          clearTimeout(armed);
          armed = null;
          button.classList.remove('armed');
          button.textContent = label;
        };
        disarmers.push(disarm);
        button.addEventListener('click', () => {
          if (armed === null) {
            for (const other of disarmers) other();
            armed = setTimeout(disarm, ARM_MS);
            button.classList.add('armed');
            button.textContent = t().tap_again + label;
            return;
          }
          disarm();
          post('/driver/canned', { code: c.code, id: nonce() }, 30);
        });
        return button;
      }),
    );
  }

  function renderStatus(s) {
    document.body.dataset.online = s.online ? 'true' : 'false';
    let text = s.online ? t().online : t().offline;
    if (s.pending > 0) text += ' \u00b7 ' + s.pending + ' ' + t().queued;
    setText('uplink-text', text);
    let sos = emergencySending ? '\u2026' : '';
    if (s.emergency) sos = (s.emergency.pending ? '\u2026 ' : '\u2713 ') + hhmm(s.emergency.t);
    setText('emergency-status', sos);
  }

  function render() {
    if (!state) return;
    takeLanguage(state);
    renderJourney(state);
    renderMap(state.map);
    renderMessages(state);
    renderCanned(state);
    renderStatus(state);
  }

  // -- the emergency button: hold, no dialog, nothing that draws attention -----------------
  function initEmergency() {
    const button = el('emergency');
    let timer = null;
    const cancel = () => {
      clearTimeout(timer);
      timer = null;
      button.classList.remove('holding');
    };
    button.addEventListener('pointerdown', (event) => {
      event.preventDefault();
      if (timer !== null) return;
      button.classList.add('holding');
      timer = setTimeout(async () => {
        cancel();
        emergencySending = true;
        render();
        // Retried for minutes with the same id: the agent sends it exactly once.
        await post('/driver/emergency', { id: nonce() }, 300);
        emergencySending = false;
        render();
      }, HOLD_MS);
    });
    for (const name of ['pointerup', 'pointerleave', 'pointercancel']) {
      button.addEventListener(name, cancel);
    }
    button.addEventListener('contextmenu', (event) => event.preventDefault());
  }

  // -- live updates ----------------------------------------------------------------------
  function connect() {
    const source = new EventSource('/driver/events');
    source.onopen = () => {
      document.body.dataset.agent = 'live';
    };
    source.onmessage = (event) => {
      try {
        state = JSON.parse(event.data).state;
      } catch (err) {
        return;
      }
      render();
    };
    source.onerror = () => {
      document.body.dataset.agent = 'lost';
    };
  }

  function tick() {
    const d = new Date();
    setText('clock', pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()));
  }

  renderLabels();
  applyTheme(initialTheme());
  el('theme').addEventListener('click', () => {
    applyTheme(document.documentElement.dataset.theme === 'night' ? 'day' : 'night');
  });
  initEmergency();
  tick();
  setInterval(tick, 1000);
  connect();
})();
