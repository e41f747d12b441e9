// The driver's terminal: renders the agent's DriverState, live from /driver/events, and posts
// the driver's actions. Vanilla JS, no build step. Texts from dispatch are untrusted: they are
// only ever set with textContent.
'use strict';

(function () {
  const BANDS = {
    early: 'early',
    on_time: 'on time',
    late: 'late',
    very_late: 'very late',
    unknown: '',
  };
  const HOLD_MS = 2000; // the emergency button needs a deliberate 2 s hold
  const ARM_MS = 4000; // a canned message needs a second tap within this time
  const SVG = 'http://www.w3.org/2000/svg';

  const el = (id) => document.getElementById(id);
  let state = null;
  let cannedCodes = '';
  let messagesKey = '';
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

  // -- theme -----------------------------------------------------------------------------
  function applyTheme(theme) {
    document.documentElement.dataset.theme = theme;
    el('theme').textContent = theme === 'night' ? 'Day' : 'Night';
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
    let label = s.at_stop ? 'At stop' : 'Next stop';
    if (s.finished) label = 'Trip finished';
    if (!s.trip_id) label = 'No trip';
    setText('next-label', label);
    setText('next-stop', s.finished ? '' : s.next_stop);
    const adherence = el('adherence');
    adherence.dataset.band = s.adherence;
    setText('adherence-text', s.adherence_text);
    setText('adherence-label', BANDS[s.adherence] || '');
    el('off-route').hidden = s.on_route;
    el('diversion').hidden = !s.diversion;
    setText('diversion', s.diversion ? 'Diversion: ' + s.diversion : '');
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
      empty.textContent = state.trip_id ? 'Waiting for the position on the route' : 'No trip';
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
    // Rebuilt only when they change: a button replaced under the driver's finger loses the tap.
    const key = JSON.stringify([s.messages, s.sent]);
    if (key === messagesKey) return;
    messagesKey = key;
    const unacked = el('unacked');
    unacked.hidden = s.unacked === 0;
    unacked.textContent = String(s.unacked);
    el('messages').replaceChildren(
      ...s.messages.map((m) => {
        const open = m.acked_t === null;
        const row = li(open ? 'open' : 'done');
        row.dataset.id = m.id;
        row.append(span('text', m.text));
        let meta = hhmm(m.received_t);
        if (!open) meta += ' \u00b7 acknowledged ' + hhmm(m.acked_t);
        const metaNode = span('meta', meta);
        if (!open) {
          metaNode.append(
            span(m.ack_pending ? 'pending' : 'ok', m.ack_pending ? ' \u00b7 queued' : ' \u2713'),
          );
        }
        row.append(metaNode);
        if (open) {
          const button = document.createElement('button');
          button.type = 'button';
          button.className = 'ack';
          button.textContent = 'Acknowledge';
          button.addEventListener('click', () => {
            button.disabled = true;
            post('/driver/ack', { id: m.id }, 30);
          });
          row.append(button);
        }
        return row;
      }),
    );
    el('sent').replaceChildren(
      ...s.sent.map((item) => {
        const row = li(item.pending ? 'pending' : '');
        row.append(span('what', item.label));
        row.append(span('meta', hhmm(item.t) + (item.pending ? ' queued' : ' \u2713')));
        return row;
      }),
    );
  }

  function renderCanned(s) {
    const codes = s.canned.map((c) => c.code).join(',');
    if (codes === cannedCodes) return;
    cannedCodes = codes;
    disarmers.length = 0;
    el('canned').replaceChildren(
      ...s.canned.map((c) => {
        const button = document.createElement('button');
        button.type = 'button';
        button.dataset.code = c.code;
        button.textContent = c.label;
        let armed = null;
        const disarm = () => {
          clearTimeout(armed);
          armed = null;
          button.classList.remove('armed');
          button.textContent = c.label;
        };
        disarmers.push(disarm);
        button.addEventListener('click', () => {
          if (armed === null) {
            for (const other of disarmers) other();
            armed = setTimeout(disarm, ARM_MS);
            button.classList.add('armed');
            button.textContent = 'Tap again: ' + c.label;
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
    let text = s.online ? 'online' : 'offline';
    if (s.pending > 0) text += ' \u00b7 ' + s.pending + ' queued';
    setText('uplink-text', text);
    let sos = emergencySending ? '\u2026' : '';
    if (s.emergency) sos = (s.emergency.pending ? '\u2026 ' : '\u2713 ') + hhmm(s.emergency.t);
    setText('emergency-status', sos);
  }

  function render() {
    if (!state) return;
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

  applyTheme(initialTheme());
  el('theme').addEventListener('click', () => {
    applyTheme(document.documentElement.dataset.theme === 'night' ? 'day' : 'night');
  });
  initEmergency();
  tick();
  setInterval(tick, 1000);
  connect();
})();
