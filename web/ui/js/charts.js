// Charts drawn by Apache ECharts (web/node_modules, staged to /vendor/echarts.min.js). Tooltips
// render as canvas text (renderMode 'richText'), so no API data ever becomes HTML.

export function chartsAvailable() {
  return typeof window.echarts !== 'undefined';
}

// A chart bound to `container`, resized with the window; dispose() on leaving the page.
export class Chart {
  constructor(container) {
    this.container = container;
    this.chart = chartsAvailable() ? window.echarts.init(container) : null;
    if (!this.chart) container.textContent = 'charts unavailable: run scripts/setup.sh (npm ci)';
    this.onResize = () => this.chart && this.chart.resize();
    window.addEventListener('resize', this.onResize);
  }

  set(option) {
    if (!this.chart) return;
    this.chart.setOption({
      animation: false,
      tooltip: { trigger: 'axis', renderMode: 'richText' },
      grid: { left: 56, right: 24, top: 36, bottom: 40 },
      ...option,
    }, { notMerge: true });
  }

  dispose() {
    window.removeEventListener('resize', this.onResize);
    if (this.chart) this.chart.dispose();
  }
}

// One line per named series over a time axis: series = [{name, points: [[ms, value]...]}].
export function timeLines(title, yName, series, extra = {}) {
  return {
    title: { text: title, textStyle: { fontSize: 13 } },
    legend: { top: 4, right: 8, type: 'scroll', width: '55%' },
    xAxis: { type: 'time' },
    yAxis: { type: 'value', name: yName, scale: true },
    series: series.map(s => ({ type: 'line', showSymbol: false, name: s.name, data: s.points, ...s.extra })),
    ...extra,
  };
}
