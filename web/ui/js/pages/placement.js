// Placement map: for one layer, every GPU's slots with the expert each holds. An expert's colour
// is its group: grace places affinity groups GPU by GPU, so an expert's group is the GPU of its
// first copy; replicas elsewhere keep that colour and carry a badge with the number of copies.
// Slots that changed since the previously shown epoch are outlined.
import { get, send } from '../api.js';
import { el, replace, select, fmt } from '../dom.js';

// Expert -> group (GPU of its first slot) and expert -> copies, for one layer's slot row.
export function groupsOf(row, slotsPerGpu) {
  const group = new Map();
  const copies = new Map();
  row.forEach((expert, slot) => {
    if (expert < 0) return;  // a spare slot
    if (!group.has(expert)) group.set(expert, Math.floor(slot / slotsPerGpu));
    copies.set(expert, (copies.get(expert) || 0) + 1);
  });
  return { group, copies };
}

function colour(group, groups) {
  return `hsl(${Math.round((group * 360) / Math.max(1, groups))}, 60%, 80%)`;
}

export default {
  mount(root) {
    let layerIndex = 0;
    let shown = null;       // {epoch, rows} on screen
    let previous = null;    // the rows of the epoch shown before it
    const header = el('div', { class: 'row' });
    const message = el('div');
    const summary = el('p', { class: 'muted', 'data-testid': 'placement-summary' });
    const map = el('div', { class: 'map', 'data-testid': 'placement-map' });
    const replan = el('button', { 'data-testid': 'replan' }, 'Force replan');
    replan.addEventListener('click', async () => {
      try {
        await send('POST', '/api/v1/replan');
        replace(message, el('div', { class: 'banner ok' }, 'replan requested: the map updates when the new epoch commits'));
      } catch (err) {
        replace(message, el('div', { class: 'banner error', 'data-testid': 'replan-error' }, err.message));
      }
    });
    root.append(header, message, el('div', { class: 'panel' }, summary, map,
      el('p', { class: 'legend' },
        'Colour: the expert\'s group (the GPU of its first copy). Badge: copies of a replicated ',
        'expert. ·: a spare slot. Dashed outline: changed since the epoch shown before.')));

    function draw(p) {
      const t = p.topology;
      const row = p.physical_to_logical_map[layerIndex];
      const before = previous ? previous[layerIndex] : null;
      const { group, copies } = groupsOf(row, t.slots_per_gpu);
      const gpus = t.nodes * t.gpus_per_node;
      let replicated = 0;
      for (const n of copies.values()) if (n > 1) ++replicated;
      replace(summary, `epoch ${p.epoch} · layer ${p.layers[layerIndex]} · ${p.num_experts} experts in `,
        `${row.length} slots on ${gpus} GPUs · ${replicated} experts replicated · committed `,
        fmt.datetime(p.committed_at_ms));
      const lines = [];
      for (let g = 0; g < gpus; ++g) {
        if (g > 0 && g % t.gpus_per_node === 0) lines.push(el('div', { class: 'node-gap' }));
        const cells = [];
        for (let s = 0; s < t.slots_per_gpu; ++s) {
          const slot = g * t.slots_per_gpu + s;
          const expert = row[slot];
          if (expert < 0) {
            cells.push(el('div', { class: 'slot empty', 'data-slot': slot, 'data-expert': expert,
              title: `slot ${slot}: spare` }, '·'));
            continue;
          }
          const n = copies.get(expert);
          const changed = before && before[slot] !== expert;
          const cell = el('div', {
            class: `slot${n > 1 ? ' replica' : ''}${changed ? ' changed' : ''}`,
            'data-slot': slot, 'data-expert': expert, 'data-copies': n > 1 ? `×${n}` : null,
            title: `slot ${slot}: expert ${expert}${n > 1 ? `, ${n} copies` : ''}`,
          }, expert);
          cell.style.backgroundColor = colour(group.get(expert), gpus);
          cells.push(cell);
        }
        const node = Math.floor(g / t.gpus_per_node);
        lines.push(el('div', { class: 'gpu' },
          el('span', { class: 'gpu-label' }, `node ${node} · GPU ${g % t.gpus_per_node}`), cells));
      }
      replace(map, lines);
    }

    function drawHeader(p) {
      const options = p.layers.map((id, i) => ({ value: i, label: `layer ${id}` }));
      replace(header, el('h2', {}, 'Placement'),
        el('label', {}, 'Layer ', select(options, layerIndex, v => {
          layerIndex = Number(v);
          draw(shown);
        }, 'layer-select')), replan);
    }

    return {
      async refresh() {
        const p = await get('/api/v1/placement');
        if (!shown) drawHeader(p);
        if (!shown || shown.epoch !== p.epoch) {
          previous = shown ? shown.physical_to_logical_map : null;
          shown = p;
          draw(p);
        }
      },
      unmount() {},
    };
  },
};
