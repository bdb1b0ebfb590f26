// Overview: the epoch, agents, counters, the imbalance and cross-node traffic of every layer
// over the recent control intervals (epoch switches marked), and per layer the traffic measured
// on the agents' dispatch over the latest window beside the cost model's estimate.
import { get, send } from '../api.js';
import { el, replace, table, card, fmt } from '../dom.js';
import { Chart, timeLines } from '../charts.js';

function epochMarks(items) {
  const marks = [];
  for (let i = 1; i < items.length; ++i) {
    if (items[i].epoch !== items[i - 1].epoch) {
      marks.push({ xAxis: items[i].time_ms, label: { formatter: `epoch ${items[i].epoch}` } });
    }
  }
  return marks;
}

// Sends per token over the window, or null when it saw no token.
function perToken(window, key) {
  return window.tokens > 0 ? window[key] / window.tokens : null;
}

function perLayerSeries(trends, key) {
  return trends.layers.map((layer, i) => ({
    name: `layer ${layer}`,
    points: trends.items.map(t => [t.time_ms, t[key][i]]),
  }));
}

export default {
  mount(root) {
    const message = el('div');
    const cards = el('div', { class: 'cards' });
    const imbalance = el('div', { class: 'chart', 'data-testid': 'imbalance-chart' });
    const traffic = el('div', { class: 'chart', 'data-testid': 'traffic-chart' });
    const measured = el('div', { 'data-testid': 'measured-traffic' });
    const agents = el('div', { 'data-testid': 'agents' });
    const events = el('div');
    const pause = el('button', { class: 'secondary', 'data-testid': 'pause' }, 'Pause');
    let paused = false;
    pause.addEventListener('click', async () => {
      try {
        await send('POST', paused ? '/api/v1/resume' : '/api/v1/pause');
        replace(message);
      } catch (err) {
        replace(message, el('div', { class: 'banner error' }, err.message));
      }
    });
    root.append(
      el('div', { class: 'row' }, el('h2', {}, 'Overview'), pause),
      message, cards,
      el('div', { class: 'grid2' },
        el('div', { class: 'panel' }, imbalance),
        el('div', { class: 'panel' }, traffic)),
      el('div', { class: 'panel' },
        el('h3', {}, 'Measured traffic, latest window (beside the model)'), measured),
      el('div', { class: 'panel' }, el('h3', {}, 'Agents'), agents),
      el('div', { class: 'panel' }, el('h3', {}, 'Recent agent events'), events));
    const imbalanceChart = new Chart(imbalance);
    const trafficChart = new Chart(traffic);

    return {
      async refresh() {
        const [status, agentList, trends, traffic] = await Promise.all([
          get('/api/v1/status'), get('/api/v1/agents'), get('/api/v1/trends', { limit: 300 }),
          get('/api/v1/traffic')]);
        paused = status.paused;
        pause.textContent = paused ? 'Resume' : 'Pause';
        const worst = status.layer_imbalance.length ? Math.max(...status.layer_imbalance) : null;
        replace(cards,
          card('Epoch', status.epoch, 'epoch'),
          card('Control loop', status.paused ? 'paused' : 'running', 'loop-state'),
          card('Agents up / lost', `${status.agents_up} / ${status.agents_lost}`, 'agents-up'),
          card('Worst layer imbalance', fmt.num(worst), 'worst-imbalance'),
          card('Migrations', status.migrations_total, 'migrations'),
          card('Bytes migrated', fmt.bytes(status.migration_bytes_total), 'bytes'),
          card('Decisions', status.decisions_total, 'decisions'),
          card('Forecast wMAPE (last value)',
            `${fmt.num(status.forecast_mape, 3)} (${fmt.num(status.last_value_mape, 3)})`, 'mape'));
        const marks = { markLine: { symbol: 'none', data: epochMarks(trends.items), lineStyle: { type: 'dashed' } } };
        const withMarks = series => series.map((s, i) => (i === 0 ? { ...s, extra: marks } : s));
        imbalanceChart.set(timeLines('Imbalance (max / mean GPU load)', 'max/mean',
          withMarks(perLayerSeries(trends, 'imbalance'))));
        trafficChart.set(timeLines('Estimated cross-node sends per token', 'sends',
          withMarks(perLayerSeries(trends, 'cross_node_sends'))));
        const modeled = new Map(status.layers.map((layer, i) => [layer, i]));
        const model = (l, key) => (modeled.has(l.layer) ? status[key][modeled.get(l.layer)] : null);
        replace(measured, table([
          { label: 'layer', value: l => l.layer, num: true },
          { label: 'cross-node sends / token, measured', value: l => fmt.num(perToken(l.window, 'cross_node_sends')), num: true },
          { label: 'model', value: l => fmt.num(model(l, 'layer_cross_node_sends')), num: true },
          { label: 'remote GPU sends / token', value: l => fmt.num(perToken(l.window, 'remote_sends')), num: true },
          { label: 'imbalance, measured', value: l => fmt.num(l.window.imbalance), num: true },
          { label: 'model', value: l => fmt.num(model(l, 'layer_imbalance')), num: true },
          { label: 'tokens (total)', value: l => l.tokens, num: true },
        ], traffic.layers.filter(l => l.tokens > 0), 'no traffic measured yet'));
        replace(agents, table([
          { label: 'agent', value: a => a.agent_id },
          { label: 'node', value: a => a.node, num: true },
          { label: 'ranks', value: a => a.ranks.join(', ') },
          { label: 'state', value: a => el('span', { class: a.state === 'up' ? 'ok' : 'error' }, a.state) },
          { label: 'epoch', value: a => a.epoch, num: true },
          { label: 'step', value: a => a.step, num: true },
          { label: 'last seen', value: a => fmt.time(a.last_seen_ms) },
        ], agentList.agents, 'no agent has connected'));
        replace(events, table([
          { label: 'time', value: e => fmt.time(e.time_ms) },
          { label: 'agent', value: e => e.agent_id },
          { label: 'event', value: e => e.event },
          { label: 'detail', value: e => e.detail },
        ], agentList.events.slice(0, 8)));
      },
      unmount() {
        imbalanceChart.dispose();
        trafficChart.dispose();
      },
    };
  },
};
