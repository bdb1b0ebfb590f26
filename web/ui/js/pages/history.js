// History: the epochs committed and the decisions behind them (reason, predicted against
// realised gain, bytes), and a comparison of any two epochs: which slots changed expert.
import { get } from '../api.js';
import { el, replace, table, select, fmt } from '../dom.js';
import { Chart } from '../charts.js';

// The slots whose expert differs between two placements: [{layer, gpu, slot, from, to}].
export function diffPlacements(a, b) {
  const moved = [];
  const perGpu = a.topology.slots_per_gpu;
  a.physical_to_logical_map.forEach((row, l) => {
    row.forEach((expert, slot) => {
      const other = b.physical_to_logical_map[l][slot];
      if (other !== expert) {
        moved.push({ layer: a.layers[l], gpu: Math.floor(slot / perGpu), slot, from: expert, to: other });
      }
    });
  });
  return moved;
}

export default {
  mount(root) {
    const gains = el('div', { class: 'chart', 'data-testid': 'gain-chart' });
    const epochs = el('div', { 'data-testid': 'epochs' });
    const decisions = el('div', { 'data-testid': 'decisions' });
    const compareControls = el('div', { class: 'row' });
    const comparison = el('div', { 'data-testid': 'comparison' });
    root.append(el('h2', {}, 'History'),
      el('div', { class: 'panel' }, gains),
      el('div', { class: 'grid2' },
        el('div', { class: 'panel' }, el('h3', {}, 'Epochs'), epochs),
        el('div', { class: 'panel' }, el('h3', {}, 'What moved between two epochs'),
          compareControls, comparison)),
      el('div', { class: 'panel' }, el('h3', {}, 'Decisions'), decisions));
    const chart = new Chart(gains);
    let from = null;
    let to = null;
    let knownEpochs = '';

    async function compare() {
      if (from === null || to === null) return;
      const [a, b] = await Promise.all([get(`/api/v1/placements/${from}`), get(`/api/v1/placements/${to}`)]);
      const moved = diffPlacements(a, b);
      const layers = new Set(moved.map(m => m.layer));
      replace(comparison,
        el('p', { 'data-testid': 'moved-summary' },
          `epoch ${from} → ${to}: ${moved.length} slots changed expert in ${layers.size} layers`),
        table([
          { label: 'layer', value: m => m.layer, num: true },
          { label: 'GPU', value: m => m.gpu, num: true },
          { label: 'slot', value: m => m.slot, num: true },
          { label: 'expert before', value: m => m.from, num: true },
          { label: 'expert after', value: m => m.to, num: true },
        ], moved.slice(0, 200), 'the two epochs place every slot alike'));
    }

    function drawCompareControls(list) {
      const options = list.map(p => ({ value: p.epoch, label: `epoch ${p.epoch}` }));
      if (from === null) from = list.length > 1 ? list[1].epoch : list[0].epoch;
      if (to === null) to = list[0].epoch;
      replace(compareControls,
        el('label', {}, 'from ', select(options, from, v => { from = Number(v); compare(); }, 'compare-from')),
        el('label', {}, 'to ', select(options, to, v => { to = Number(v); compare(); }, 'compare-to')));
    }

    return {
      async refresh() {
        const [placements, decided] = await Promise.all([
          get('/api/v1/placements', { limit: 100 }), get('/api/v1/decisions', { limit: 100 })]);
        const list = placements.items;  // newest first
        replace(epochs, table([
          { label: 'epoch', value: p => p.epoch, num: true },
          { label: 'committed', value: p => fmt.datetime(p.committed_at_ms) },
          { label: 'decision', value: p => p.decision_id || '–', num: true },
        ], list));
        const signature = list.map(p => p.epoch).join(',');
        if (list.length && signature !== knownEpochs) {
          knownEpochs = signature;
          drawCompareControls(list);
          await compare();
        }
        const items = decided.items;  // newest first
        replace(decisions, table([
          { label: 'time', value: d => fmt.time(d.time_ms) },
          { label: 'action', value: d => d.action },
          { label: 'layer', value: d => (d.layer_index < 0 ? 'all' : d.layer_index), num: true },
          { label: 'reason', value: d => d.reason },
          { label: 'predicted gain (ms)', value: d => fmt.num(d.predicted_gain_ms, 1), num: true },
          { label: 'realised gain (ms)', value: d => fmt.num(d.realised_gain_ms, 1), num: true },
          { label: 'bytes', value: d => fmt.bytes(d.bytes), num: true },
          { label: 'epoch', value: d => d.epoch ?? '–', num: true },
        ], items, 'no decision yet'));
        const made = items.filter(d => d.epoch !== null).reverse();
        chart.set({
          title: { text: 'Decisions that migrated: predicted against realised gain', textStyle: { fontSize: 13 } },
          legend: { top: 4, right: 8 },
          xAxis: {
            type: 'category',
            data: made.map(d => `#${d.id} ${d.layer_index < 0 ? 'all' : `L${d.layer_index}`} ${fmt.time(d.time_ms)}`),
          },
          yAxis: { type: 'value', name: 'ms saved' },
          series: [
            { type: 'bar', name: 'predicted', data: made.map(d => d.predicted_gain_ms) },
            // Filled in once the horizon has been observed.
            { type: 'bar', name: 'realised', data: made.map(d => d.realised_gain_ms ?? '-') },
          ],
        });
      },
      unmount() {
        chart.dispose();
      },
    };
  },
};
