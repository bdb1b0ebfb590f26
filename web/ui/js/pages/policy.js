// Policy: a form for the daemon's policy, built from the schema in /api/v1/openapi.json (the
// same table the server validates against). Values are not checked here: the server's answer,
// naming the field and its allowed range, is shown beside that field.
import { get, send, apiToken } from '../api.js';
import { el, replace } from '../dom.js';

export default {
  mount(root) {
    const message = el('div', { 'data-testid': 'policy-message' });
    const form = el('form', { class: 'form', 'data-testid': 'policy-form', novalidate: true });
    root.append(el('h2', {}, 'Policy'),
      el('p', { class: 'muted' },
        'Changes need the API token (the field in the top bar: graced\'s GRACE_API_TOKEN). ',
        'Only the fields you change are sent.'),
      message, el('div', { class: 'panel' }, form));
    let loaded = null;  // the policy as last read
    const inputs = new Map();
    const errors = new Map();

    function build(schema, policy) {
      const rows = [];
      for (const [name, spec] of Object.entries(schema)) {
        const input = spec.enum
          ? el('select', { name, id: `policy-${name}` }, spec.enum.map(v => el('option', { value: v }, v)))
          : el('input', { name, id: `policy-${name}`, type: 'text', inputmode: 'decimal' });
        input.value = String(policy[name]);
        inputs.set(name, input);
        const error = el('div', { class: 'field-error', 'data-field-error': name });
        errors.set(name, error);
        const range = spec.enum ? `one of ${spec.enum.join(', ')}` : `${spec.minimum} to ${spec.maximum}`;
        rows.push(el('label', { for: `policy-${name}` }, name), input,
          el('span', { class: 'hint' }, `${spec.description} (${range})`), error);
      }
      rows.push(el('span'), el('button', { type: 'submit', 'data-testid': 'policy-save' }, 'Save'));
      replace(form, rows);
    }

    function changes(schema) {
      const patch = {};
      for (const [name, spec] of Object.entries(schema)) {
        const text = inputs.get(name).value.trim();
        if (text === String(loaded[name])) continue;
        // Numbers are sent as numbers when they parse, else as typed, for the server to judge.
        patch[name] = spec.enum || text === '' || Number.isNaN(Number(text)) ? text : Number(text);
      }
      return patch;
    }

    let schema = null;
    form.addEventListener('submit', async event => {
      event.preventDefault();
      for (const [name, error] of errors) {
        replace(error);
        inputs.get(name).classList.remove('invalid');
      }
      const patch = changes(schema);
      if (Object.keys(patch).length === 0) {
        replace(message, el('div', { class: 'banner' }, 'nothing changed'));
        return;
      }
      if (!apiToken()) {
        replace(message, el('div', { class: 'banner error' }, 'enter the API token in the top bar first'));
        return;
      }
      try {
        loaded = await send('PUT', '/api/v1/policy', patch);
        for (const [name, input] of inputs) input.value = String(loaded[name]);
        replace(message, el('div', { class: 'banner ok' }, `saved: ${Object.keys(patch).join(', ')}`));
      } catch (err) {
        replace(message, el('div', { class: 'banner error', 'data-testid': 'policy-error' }, err.message));
        if (err.field && errors.has(err.field)) {
          replace(errors.get(err.field), err.message);
          inputs.get(err.field).classList.add('invalid');
        }
      }
    });

    return {
      async refresh() {
        if (schema) return;  // the form is not overwritten while someone edits it
        const [doc, policy] = await Promise.all([get('/api/v1/openapi.json'), get('/api/v1/policy')]);
        schema = doc.components.schemas.Policy.properties;
        loaded = policy;
        build(schema, policy);
      },
      unmount() {},
    };
  },
};
