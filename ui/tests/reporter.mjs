// A node:test reporter: one line per test, the failure's message and stack,
// and a closing line "ui: N passed, M failed[, K skipped]".
// Skipped and todo tests are never counted as passed.

function indent(s, pad = '    ') {
  return String(s)
    .split('\n')
    .map((l) => pad + l)
    .join('\n');
}

function describeError(err) {
  if (!err) return '';
  // node:test wraps the test's error: the interesting one is `cause`.
  const e = err.cause ?? err;
  let out = e.stack || e.message || String(e);
  if (e.message && !out.includes(e.message)) out = `${e.message}\n${out}`;
  if (e.cause) out += `\ncaused by: ${e.cause.stack || e.cause.message || e.cause}`;
  return out;
}

export default async function* reporter(source) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const failures = [];
  const started = Date.now();
  for await (const event of source) {
    const { type, data } = event;
    if (type === 'test:pass' || type === 'test:fail') {
      if (data.details?.type === 'suite') continue;
      const ms = Math.round(data.details?.duration_ms ?? 0);
      const file = data.file ? data.file.split('/').pop() : '';
      const where = file && file !== 'harness.mjs' ? ` (${file})` : '';
      if (data.skip || data.todo) {
        skipped += 1;
        yield `- skip ${data.name}${where}\n`;
      } else if (type === 'test:pass') {
        passed += 1;
        yield `ok   ${data.name}${where} ${ms} ms\n`;
      } else {
        failed += 1;
        const msg = describeError(data.details?.error);
        failures.push({ name: data.name, where, msg });
        yield `FAIL ${data.name}${where} ${ms} ms\n${indent(msg)}\n`;
      }
    } else if (type === 'test:stderr' || type === 'test:stdout') {
      yield indent(data.message ?? '', '  | ');
      if (!String(data.message ?? '').endsWith('\n')) yield '\n';
    } else if (type === 'test:diagnostic') {
      // The runner's own totals; ours follow.
    }
  }
  if (failures.length) {
    yield `\nFailed tests:\n${failures.map((f) => `  - ${f.name}${f.where}`).join('\n')}\n`;
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  yield `\nwall time ${secs} s\n`;
  yield `ui: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`;
}
