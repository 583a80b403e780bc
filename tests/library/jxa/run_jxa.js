// Run musicd's JXA script under Node.js the way `osascript -l JavaScript` runs it.
//
//   node run_jxa.js SCRIPT LIBRARY_SPEC_JSON [EVENTS_OUT] -- [argv...]
//
// The script's text is evaluated with a fake `Application` (see fake_music.js), then run(argv)
// is called. Like osascript, the return value is printed to stdout followed by a newline; a
// thrown error is printed to stderr as "execution error: ... (number)" with exit status 1.
// When EVENTS_OUT is given, the Apple Events the script sent are written there as JSON.
'use strict';

const fs = require('fs');
const { makeMusic } = require('./fake_music.js');

function main() {
  const args = process.argv.slice(2);
  const dash = args.indexOf('--');
  const own = dash >= 0 ? args.slice(0, dash) : args;
  const argv = dash >= 0 ? args.slice(dash + 1) : [];
  const [scriptPath, specPath, eventsPath] = own;
  const source = fs.readFileSync(scriptPath, 'utf8');
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'));
  const { app, events } = makeMusic(spec);
  function Application(name) {
    if (name !== 'Music') throw new Error(`unexpected Application(${JSON.stringify(name)})`);
    return app;
  }
  let code = 0;
  try {
    const run = new Function('Application', `${source}\nreturn run;`)(Application);
    const result = run(argv);
    process.stdout.write(`${result}\n`);
  } catch (err) {
    const number = err && err.errorNumber !== undefined ? err.errorNumber : -2700;
    process.stderr.write(`${scriptPath}: execution error: Error: ${err.message} (${number})\n`);
    code = 1;
  }
  if (eventsPath) {
    fs.writeFileSync(eventsPath, JSON.stringify({ events, launched: app.launched }));
  }
  process.exitCode = code;
}

main();
