// grace's web UI: a page per hash route, each refreshed by polling graced's REST API every
// couple of seconds while it is shown.
import { setApiToken, apiToken } from './api.js';
import { fmt } from './dom.js';
import overview from './pages/overview.js';
import placement from './pages/placement.js';
import history from './pages/history.js';
import load from './pages/load.js';
import policy from './pages/policy.js';

const PAGES = { overview, placement, history, load, policy };
const REFRESH_MS = 2000;

const root = document.getElementById('page');
const live = document.getElementById('live');
let current = null;  // {name, view}
let timer = null;

function routeName() {
  const name = location.hash.replace(/^#\/?/, '').split('?')[0];
  return Object.hasOwn(PAGES, name) ? name : 'overview';
}

async function refresh() {
  if (!current) return;
  const shown = current;
  try {
    await shown.view.refresh();
    if (shown !== current) return;
    live.textContent = `live · updated ${fmt.time(Date.now())}`;
    live.classList.remove('offline');
  } catch (err) {
    live.textContent = `offline: ${err.message}`;
    live.classList.add('offline');
  }
}

function show() {
  const name = routeName();
  if (current && current.name === name) return;
  if (current) current.view.unmount();
  root.replaceChildren();
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.getAttribute('href') === `#/${name}`);
  }
  document.title = `grace · ${name}`;
  current = { name, view: PAGES[name].mount(root) };
  root.dataset.page = name;
  refresh();
}

function poll() {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    await refresh();
    poll();
  }, REFRESH_MS);
}

const tokenInput = document.getElementById('api-token');
tokenInput.value = apiToken();
tokenInput.addEventListener('input', () => setApiToken(tokenInput.value.trim()));

window.addEventListener('hashchange', show);
show();
poll();
