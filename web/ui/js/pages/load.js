// Load: one layer's per-expert load over time as a heatmap, and one expert's observed load
// against the forecast the daemon made for it one interval before.
import { get } from '../api.js';
import { el, replace, select, fmt } from '../dom.js';
import { Chart, timeLines } from '../charts.js';

const WINDOW_MS = 5 * 60 * 1000;

export default {
  mount(root) {
    let layerIndex = 0;
    let expert = null;  // null: the hottest
    const controls = el('div', { class: 'row' });
    const heat = el('div', { class: 'chart tall', 'data-testid': 'heatmap' });
    const forecastBox = el('div', { class: 'chart', 'data-testid': 'forecast-chart' });
    const error = el('p', { class: 'muted', 'data-testid': 'forecast-error' });
    root.append(el('h2', {}, 'Load'), controls,
      el('div', { class: 'panel' }, heat),
      el('div', { class: 'panel' }, forecastBox, error));
    const heatmap = new Chart(heat);
    const forecastChart = new Chart(forecastBox);
    let layers = null;
    let experts = 0;

    function drawControls() {
      replace(controls,
        el('label', {}, 'Layer ', select(layers.map((id, i) => ({ value: i, label: `layer ${id}` })),
          layerIndex, v => { layerIndex = Number(v); expert = null; refresh(); }, 'load-layer')),
        el('label', {}, 'Expert ', select(
          [{ value: '', label: 'hottest' }].concat(
            Array.from({ length: experts }, (_, e) => ({ value: e, label: `expert ${e}` }))),
          expert ?? '', v => { expert = v === '' ? null : Number(v); refresh(); }, 'load-expert')));
    }

    async function refresh() {
      const status = await get('/api/v1/status');
      const [trends, forecast] = await Promise.all([
        get('/api/v1/trends', { limit: 1 }), get('/api/v1/forecast', { layer: layerIndex, limit: 120 })]);
      const newest = trends.items.length ? trends.items[0].time_ms : Date.now();
      const load = await get('/api/v1/load', {
        layer: layerIndex, from_ms: Math.max(0, newest - WINDOW_MS), limit: 1000 });
      const samples = load.items;
      const width = samples.length ? samples[0].load.length : 0;
      if (!layers || layers.length !== status.layers.length || experts !== width) {
        layers = status.layers;
        experts = width;
        drawControls();
      }
      const cells = [];
      let max = 0;
      samples.forEach((s, t) => s.load.forEach((v, e) => {
        cells.push([t, e, v]);
        max = Math.max(max, v);
      }));
      heatmap.set({
        title: { text: `Layer ${layers[layerIndex]}: tokens per step per expert (last 5 minutes)`, textStyle: { fontSize: 13 } },
        tooltip: { renderMode: 'richText' },
        grid: { left: 56, right: 80, top: 36, bottom: 40 },
        xAxis: { type: 'category', data: samples.map(s => fmt.time(s.time_ms)) },
        yAxis: { type: 'category', name: 'expert', data: Array.from({ length: width }, (_, e) => e) },
        visualMap: { min: 0, max: max || 1, calculable: true, orient: 'vertical', right: 8, top: 'middle' },
        series: [{ type: 'heatmap', name: 'tokens per step', data: cells }],
      });
      const items = forecast.items;
      const last = items.length ? items[items.length - 1].actual : [];
      const shown = expert ?? (last.length ? last.indexOf(Math.max(...last)) : 0);
      forecastChart.set(timeLines(`Expert ${shown}: observed load and its forecast`, 'tokens/step', [
        { name: 'observed', points: items.map(i => [i.time_ms, i.actual[shown]]) },
        { name: 'forecast', points: items.filter(i => i.forecast).map(i => [i.time_ms, i.forecast[shown]]),
          extra: { lineStyle: { type: 'dashed' } } },
      ]));
      let err = 0;
      let errLast = 0;
      let total = 0;
      for (let i = 1; i < items.length; ++i) {
        if (!items[i].forecast) continue;
        items[i].actual.forEach((v, e) => {
          err += Math.abs(items[i].forecast[e] - v);
          errLast += Math.abs(items[i - 1].actual[e] - v);
          total += v;
        });
      }
      replace(error, total > 0
        ? `layer ${layers[layerIndex]}, last ${items.length} intervals: forecast wMAPE ${fmt.num(err / total, 3)} `
          + `against ${fmt.num(errLast / total, 3)} for the last value`
        : 'no forecast yet');
    }

    return {
      refresh,
      unmount() {
        heatmap.dispose();
        forecastChart.dispose();
      },
    };
  },
};
