// The Label and Arena tabs' keyboard: see KEYS_JS in ui/__init__.py. Keys act on the tab on screen (its buttons
// are the visible ones).
(() => {
  const shown = (id) => { const el = document.getElementById(id); return el && el.offsetParent !== null ? el : null; };
  const hint = (text) => {
    let el = document.getElementById('key-hint');
    if (!el) { el = document.createElement('div'); el.id = 'key-hint'; document.body.appendChild(el); }
    el.textContent = text; el.style.display = 'block';
    clearTimeout(el._timer); el._timer = setTimeout(() => { el.style.display = 'none'; }, 2500);
  };
  // A vote is in flight from the key press until its message (a new vote id) arrives, at most 3 s.
  let inFlight = null;
  const text = (id) => document.querySelector(`#${id} [data-testid=markdown]`)?.innerText || '';
  const status = () => text('vote-status');
  const saving = () => inFlight !== null && status() === inFlight.status && Date.now() - inFlight.at < 3000;
  const onScreen = (id) => !!document.querySelector(`#${id} .prompt`) && !document.querySelector(`#${id} .pending`);
  const pairOnScreen = () => onScreen('prompt');
  // The Arena tab: 1 A (left), 2 B (right), 3 tie, 4 both bad; its vote message is the reveal line.
  const arenaVotes = {'1': 'arena-vote-a', '2': 'arena-vote-b', '3': 'arena-vote-tie', '4': 'arena-vote-both_bad'};
  let arenaInFlight = null;
  const arenaSaving = () => arenaInFlight !== null && text('arena-reveal') === arenaInFlight.status
    && Date.now() - arenaInFlight.at < 3000;
  const arenaKey = (e, key) => {
    const id = arenaVotes[key];
    if (!id) return;
    e.preventDefault();
    if (arenaSaving()) { hint('Still saving your last vote: press again in a moment. Your key was not used.'); return; }
    if (!onScreen('arena-prompt')) { hint('No battle on screen yet: the next one is being sampled. Your key was not used.'); return; }
    arenaInFlight = {status: text('arena-reveal'), at: Date.now()};
    shown(id)?.click();
  };
  document.addEventListener('keydown', (e) => {
    const tag = (e.target.tagName || '').toLowerCase();
    const typing = tag === 'textarea' || (tag === 'input' && !['radio', 'checkbox', 'button'].includes(e.target.type));
    if (typing) {
      if (e.target.closest && e.target.closest('#edit-panel')) {
        if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { shown('edit-save')?.click(); e.target.blur(); e.preventDefault(); }
        if (e.key === 'Escape') { shown('edit-cancel')?.click(); e.target.blur(); e.preventDefault(); }
      }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key === 's' ? '5' : e.key;
    if (key === '?') {
      const help = document.getElementById('keys-help');
      if (help) help.classList.toggle('keys-open');
      e.preventDefault(); return;
    }
    if (shown('arena-vote-a')) { arenaKey(e, key); return; }
    const votes = {'1': 'vote-left', '2': 'vote-right', '3': 'vote-tie', '4': 'vote-both_bad', '5': 'vote-skip'};
    const rates = {'1': 'rate-up', '2': 'rate-down', '5': 'rate-skip'};
    const other = {'u': 'undo', 'e': 'edit-open'};
    const id = (shown('rate-up') && rates[key]) || votes[key] || other[key];
    if (!id) return;
    e.preventDefault();
    if ((votes[key] || key === 'e' || key === 'u') && !shown('rate-up') && saving()) {
      hint('Still saving your last vote: press again in a moment. Your key was not used.'); return;
    }
    if ((votes[key] || key === 'e') && !shown('rate-up') && !pairOnScreen()) {
      hint('No pair on screen yet: the next one is being sampled. Your key was not used.'); return;
    }
    if (votes[key] || key === 'u') inFlight = {status: status(), at: Date.now()};
    const el = shown(id);
    if (el) { el.click(); if (key === 'e') setTimeout(() => document.querySelector('#edit-text textarea')?.focus(), 300); }
    else { document.activeElement?.blur?.(); }
  });
  let syncing = false;  // the two completions scroll together
  document.addEventListener('scroll', (e) => {
    const ids = {'left-view': 'right-view', 'right-view': 'left-view', 'arena-a-view': 'arena-b-view',
      'arena-b-view': 'arena-a-view'};
    const from = e.target; if (syncing || !from.id || !ids[from.id]) return;
    const to = document.getElementById(ids[from.id]); if (!to) return;
    const span = from.scrollHeight - from.clientHeight;
    syncing = true; to.scrollTop = span > 0 ? (from.scrollTop / span) * (to.scrollHeight - to.clientHeight) : 0;
    requestAnimationFrame(() => { syncing = false; });
  }, true);
})();
