// Passenger display: renders the agent's DisplayState, live from /display/events.
// Vanilla JS, no build step. Every text from the agent is set with textContent: announcements
// come from city hall and are treated as untrusted: never parsed as HTML.
'use strict';

(function () {
  const TEXT = {
    de: {
      next_stop: 'Nächster Halt',
      this_stop: 'Aktueller Halt',
      stop_requested: 'Halt angefordert',
      now: 'jetzt',
      min: 'min',
      skipped: 'entfällt',
      on_time: 'pünktlich',
      late: (m) => '+' + m + ' min Verspätung',
      early: (m) => m + ' min früher',
      diversion: 'Umleitung',
      off_route: 'Abweichung von der Route',
      title: 'Fahrgastinformation',
      announcements: 'Durchsagen',
      later_stops: 'Weitere Halte',
      ad: 'Anzeige',
      live: 'Durchsage',
    },
    en: {
      next_stop: 'Next stop',
      this_stop: 'This stop',
      stop_requested: 'Stop requested',
      now: 'now',
      min: 'min',
      skipped: 'not served',
      on_time: 'on time',
      late: (m) => '+' + m + ' min late',
      early: (m) => m + ' min early',
      diversion: 'Diversion',
      off_route: 'Off route',
      title: 'Passenger information',
      announcements: 'Announcements',
      later_stops: 'Further stops',
      ad: 'Advertisement',
      live: 'Announcement',
    },
  };

  const params = new URLSearchParams(window.location.search);
  // The languages: the kiosk URL's ?lang=de | en | de,en if given, else the agent's
  // display.language, which comes with every state (and changes live); alternating every
  // ?cycle= (else the state's cycle_s) seconds, 8 by default.
  function known(list) {
    const out = (Array.isArray(list) ? list : [])
      .map((s) => String(s).trim())
      .filter((s) => Object.prototype.hasOwnProperty.call(TEXT, s));
    return out.length ? out : ['de'];
  }
  function seconds(value) {
    return Math.min(120, Math.max(2, Number(value) || 8));
  }
  const urlLangs = params.get('lang') ? known(params.get('lang').split(',')) : null;
  const urlCycle = params.get('cycle');
  let langs = urlLangs || ['de'];
  let cycleS = seconds(urlCycle);
  const landscape = document.body.classList.contains('landscape');
  const laterStops = landscape ? 4 : 2;

  let state = null;
  let langIndex = 0;
  let lastCycle = Date.now();
  let announcementsKey = '';

  const el = (id) => document.getElementById(id);
  const lang = () => langs[langIndex % langs.length];
  const t = () => TEXT[lang()];
  const nowS = () => Date.now() / 1000;

  function setText(id, text) {
    const node = el(id);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function show(id, visible) {
    const node = el(id);
    if (node) node.hidden = !visible;
  }

  function pad(n) {
    return (n < 10 ? '0' : '') + n;
  }

  function hhmm(date) {
    return pad(date.getHours()) + ':' + pad(date.getMinutes());
  }

  function minutesText(stop) {
    if (stop.skipped) return t().skipped;
    if (stop.expected === null || stop.expected === undefined) return '';
    const minutes = Math.round((stop.expected - nowS()) / 60);
    return minutes <= 0 ? t().now : minutes + '\u00a0' + t().min;
  }

  function delayText(delay) {
    const minutes = Math.floor(Math.abs(delay) / 60);
    if (minutes === 0) return t().on_time;
    return delay > 0 ? t().late(minutes) : t().early(minutes);
  }

  function announcementText(a) {
    return lang() === 'en' && a.text_en ? a.text_en : a.text_de;
  }

  // The language of an announcement's text when it differs from the page's: an English page
  // shows the German text of a message that has no English one (screen readers switch voice).
  function announcementLang(a) {
    return lang() === 'en' && !a.text_en ? 'de' : '';
  }

  function stillValid(a) {
    return a.valid_to === null || a.valid_to === undefined || nowS() < a.valid_to;
  }

  function renderLabels() {
    document.documentElement.lang = lang();
    for (const node of document.querySelectorAll('[data-i18n]')) {
      const text = t()[node.dataset.i18n];
      if (typeof text === 'string' && node.textContent !== text) node.textContent = text;
    }
    // Names for screen readers (regions, lists) in the page's language too.
    for (const node of document.querySelectorAll('[data-i18n-label]')) {
      const text = t()[node.dataset.i18nLabel];
      if (typeof text === 'string' && node.getAttribute('aria-label') !== text) {
        node.setAttribute('aria-label', text);
      }
    }
  }

  function renderStops() {
    const stops = state.next_stops || [];
    const next = stops[0];
    setText('next-stop', next ? next.name : '');
    const nextNode = el('next-stop');
    if (nextNode) nextNode.dataset.stopId = next ? next.stop_id : '';
    setText('next-minutes', next ? minutesText(next) : '');
    const list = el('stops');
    if (!list) return;
    const items = [];
    for (const stop of stops.slice(1, 1 + laterStops)) {
      const li = document.createElement('li');
      li.className = stop.skipped ? 'stop skipped' : 'stop';
      li.dataset.stopId = stop.stop_id;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = stop.name;
      const at = document.createElement('span');
      at.className = 'time';
      at.textContent =
        stop.expected !== null && stop.expected !== undefined && !stop.skipped
          ? hhmm(new Date(stop.expected * 1000))
          : '';
      const minutes = document.createElement('span');
      minutes.className = 'minutes';
      minutes.textContent = minutesText(stop);
      li.append(name, at, minutes);
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  function renderAnnouncements() {
    const list = el('announcements');
    if (!list) return;
    const shown = (state.announcements || []).filter(stillValid);
    // The list is a live region: rebuilt only when what it says changes, so a screen reader
    // reads an announcement once, not at every tick.
    const key = JSON.stringify(shown.map((a) => [a.id, a.priority, announcementText(a)]));
    if (key !== announcementsKey) {
      announcementsKey = key;
      const items = [];
      for (const a of shown) {
        const li = document.createElement('li');
        li.className = a.priority >= 2 ? 'announcement urgent' : 'announcement';
        li.dataset.id = a.id;
        li.textContent = announcementText(a);
        items.push(li);
      }
      list.replaceChildren(...items);
      document.body.dataset.announcements = String(items.length);
    }
    shown.forEach((a, i) => {
      const li = list.children[i];
      const other = announcementLang(a);
      if (!li || li.lang === other) return;
      if (other) li.lang = other;
      else li.removeAttribute('lang'); // lang="" would mean "unknown", not the page's
    });
  }

  // A live announcement from city hall: over the stops while it is spoken, until `until`, in
  // every language of the display at once (German first), so its text stays the same while
  // it is up and a screen reader reads the alert once.
  function renderLive() {
    const live = state.live;
    const on = Boolean(live) && typeof live.until === 'number' && nowS() < live.until;
    const english = on && Boolean(live.text_en) && langs.includes('en');
    const german = on && (langs.includes('de') || !english);
    setText('live-text', german ? live.text_de : '');
    show('live-text', german);
    setText('live-text-en', english ? live.text_en : '');
    show('live-text-en', english);
    show('live', on);
    const node = el('live');
    if (node) node.dataset.id = on ? String(live.id) : '';
    document.body.dataset.live = String(on);
  }

  function renderAd() {
    const slot = el('ad');
    if (!slot) return;
    const ad = state.ad;
    // Only paths on the agent: the page must never depend on the uplink (the agent checks too).
    const ok = ad && typeof ad.url === 'string' && ad.url.startsWith('/') && !ad.url.startsWith('//');
    if (!ok) {
      slot.replaceChildren();
      slot.hidden = true;
      delete slot.dataset.itemId;
      return;
    }
    const frame = slot.querySelector('iframe');
    if (frame && frame.title !== t().ad) frame.title = t().ad;
    if (slot.dataset.itemId === ad.item_id && slot.dataset.url === ad.url) return;
    let media;
    if (/\.(mp4|webm)$/i.test(ad.url)) {
      media = Object.assign(document.createElement('video'), { autoplay: true, muted: true, loop: true });
    } else if (/\.html?$/i.test(ad.url)) {
      // An HTML ad runs sandboxed: scripts, but no access to this page, its origin or forms.
      media = document.createElement('iframe');
      media.setAttribute('sandbox', 'allow-scripts');
      media.setAttribute('scrolling', 'no');
      media.title = t().ad;
    } else {
      media = document.createElement('img');
      media.alt = '';
    }
    media.src = ad.url;
    slot.dataset.itemId = ad.item_id;
    slot.dataset.url = ad.url;
    slot.replaceChildren(media);
    slot.hidden = false;
  }

  function render() {
    const label = el('next-label');
    if (label) label.dataset.i18n = state && state.at_stop ? 'this_stop' : 'next_stop';
    renderLabels();
    if (!state) return;
    setText('line', state.line || '');
    setText('destination', state.destination || '');
    renderStops();
    const hasDelay = state.delay_s !== null && state.delay_s !== undefined;
    setText('delay', hasDelay ? delayText(state.delay_s) : '');
    show('delay', hasDelay);
    const delay = el('delay');
    if (delay) delay.classList.toggle('late', hasDelay && state.delay_s >= 60);
    show('stop-requested', Boolean(state.stop_requested));
    const diversion = state.diversion ? t().diversion + ': ' + state.diversion : '';
    setText('diversion', diversion);
    show('diversion', Boolean(diversion));
    renderAnnouncements();
    renderLive();
    renderAd();
    document.body.dataset.online = String(Boolean(state.online));
    document.body.dataset.stops = String((state.next_stops || []).length);
    document.body.dataset.onRoute = String(state.on_route !== false);
  }

  function takeLanguages(s) {
    if (!urlCycle) cycleS = seconds(s.cycle_s);
    if (urlLangs) return;
    const next = known(s.languages);
    if (next.join(',') === langs.join(',')) return;
    langs = next;
    langIndex = 0;
    lastCycle = Date.now();
  }

  function tick() {
    setText('clock', hhmm(new Date()));
    if (langs.length > 1 && Date.now() - lastCycle >= cycleS * 1000) {
      langIndex += 1;
      lastCycle = Date.now();
    }
    // Minutes count down and announcements expire with the browser's clock too, so the
    // screen stays right for a while even if the agent goes quiet.
    render();
  }

  function connect() {
    const source = new EventSource('/display/events');
    source.onopen = () => {
      document.body.dataset.agent = 'up';
    };
    source.onerror = () => {
      // EventSource reconnects by itself (the server asks for 2 s); keep the last state.
      document.body.dataset.agent = 'down';
    };
    source.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (!message || typeof message.state !== 'object') return;
      state = message.state;
      takeLanguages(state);
      document.body.dataset.version = String(message.version);
      render();
    };
  }

  tick();
  setInterval(tick, 1000);
  connect();
})();
