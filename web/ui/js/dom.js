// DOM helpers. Data from the API always goes into the page as text (text nodes, textContent,
// attribute values): never as HTML, so nothing the daemon returns can inject markup or script.

// el('td', {class: 'num'}, '42'): an element with attributes, listeners (on<event>) and
// children (nodes, or strings and numbers added as text; null and false are skipped).
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replaces every child of `node`.
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

// A table from column specs {label, value: row => text, num: bool} and rows.
export function table(columns, rows, emptyText = 'nothing yet') {
  if (rows.length === 0) return el('p', { class: 'muted' }, emptyText);
  return el('table', {},
    el('thead', {}, el('tr', {}, columns.map(c => el('th', { class: c.num ? 'num' : null }, c.label)))),
    el('tbody', {}, rows.map(r =>
      el('tr', {}, columns.map(c => el('td', { class: c.num ? 'num' : null }, c.value(r)))))));
}

export function card(label, value, id) {
  return el('div', { class: 'card' },
    el('div', { class: 'label' }, label),
    el('div', { class: 'value', 'data-testid': id }, value));
}

export function select(options, current, onchange, testid) {
  const s = el('select', { onchange: e => onchange(e.target.value), 'data-testid': testid },
    options.map(o => el('option', { value: o.value, selected: String(o.value) === String(current) }, o.label)));
  return s;
}

export const fmt = {
  time: ms => new Date(ms).toLocaleTimeString(),
  datetime: ms => new Date(ms).toLocaleString(),
  num: (v, digits = 2) => (v === null || v === undefined || Number.isNaN(v)) ? '–' : Number(v).toFixed(digits),
  bytes: b => {
    if (!b) return '0 B';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    const i = Math.min(units.length - 1, Math.floor(Math.log10(b) / 3));
    return `${(b / 10 ** (3 * i)).toFixed(i ? 1 : 0)} ${units[i]}`;
  },
};
