// An orch_lease actor in Node.js (node-postgres): owner-exclusion and atomic stage writes through SQL.
//
//   node actor.js --dsn postgres://... [--instance NAME] [--task-table TABLE] task-1 task-2 ...
//
// --task-table names the registered table the tasks are rows of: needed once a database registers
// several (tasks, jobs…), where a call naming none is refused (42P08); optional while there is one.
//   node actor.js --dsn postgres://... --listen 10      # print NOTIFY orch_lease alerts for 10 s
//
// Each task moves queued -> merged with one irreversible effect, recorded in example_effect (the tables:
// examples/setup.sql). Run several copies at once: each effect still happens once.
//
// An instance name stands for one running process. Without --instance, the actor takes its host's first
// free slot, node-actor-<host>-<slot> (the Python client's convention, slots from 0): recover refuses a
// slot whose process is still connected (55006), and a restarted process finds its own slot again and
// recovers what its predecessor left. Exit status, as the other examples: 0; 1 for an error (a failed
// effect stops it, its lease released); 2 for an instance name in use (55006); 3 when superseded.
'use strict';
const { Client } = require('pg');
const crypto = require('node:crypto');
const os = require('node:os');

// node-postgres takes the user a DSN leaves out from $PGUSER, then $USER, and fails without both (a
// container, cron, a systemd unit): fall back to the OS user, as libpq does. A user in the DSN or $PGUSER
// still wins. (Through $PGUSER: a `user` beside `connectionString` is overwritten by the DSN's empty one.)
function connection(dsn) {
  if (!process.env.PGUSER && !process.env.USER) process.env.PGUSER = os.userInfo().username;
  return { connectionString: dsn };
}

const FROM_STAGE = 'queued';
const TO_STAGE = 'merged';

// The pretend irreversible effect. In real life: idempotent, or checked before it is redone.
async function mergePullRequest(db, task, actor) {
  await db.query('INSERT INTO example_effect (task_id, actor) VALUES ($1, $2)', [task, actor]);
  await new Promise((resolve) => setTimeout(resolve, 20));
}

// One attempt at one transition; returns what happened, for the summary.
async function advance(db, task, actor, pid, bootId, taskTable) {
  let grant;
  for (let attempt = 0; attempt < 5; attempt++) {
    grant = (await db.query(
      'SELECT acquired, outcome, token, holder, stage' +
        ' FROM orch_lease.transition_lease_acquire($1, $2, $3, $4, task_table => $5::regclass)',
      [task, actor, pid, bootId, taskTable])).rows[0];
    if (grant.outcome !== 'busy' && grant.outcome !== 'retry') break;
    // busy: another transaction is acquiring it right now; retry: a lost race rolled the attempt back.
    // Either way, try again in a moment.
    await new Promise((resolve) => setTimeout(resolve, 10 * (attempt + 1)));
  }
  if (grant.outcome === 'superseded') {
    // A newer incarnation of this instance exists: this process is a zombie and must stop.
    console.error(`${actor}: boot ${bootId} was superseded; exiting`);
    process.exit(3);
  }
  // held: a live owner is doing it; busy or retry (still, after retries): leave it for the next round;
  // not_found: no task has this id (nothing was granted).
  if (!grant.acquired) return grant.outcome;
  // acquired, reclaimed, disabled or out_of_scope (token null). From here every way out but a commit
  // that answered ends the lease: no error leaves a lease behind for the reaper.
  let ended = false;
  try {
    // The stage the acquire read after the grant (no read of our own: two round trips a cycle). The
    // task may have moved on already.
    if (grant.stage !== FROM_STAGE) return 'already_done';
    await mergePullRequest(db, task, actor);
    // A grant without a lease (disabled, out_of_scope: token null) writes by name, checking no lease:
    // commit_stage_cas refuses a null token while orch_lease is on.
    const [commit, args] = grant.token === null
      ? ['SELECT applied, outcome, current_stage' +
          ' FROM orch_lease.update_task_stage_cas($1, $2, $3, task_table => $4::regclass)',
        [task, FROM_STAGE, TO_STAGE, taskTable]]
      : ['SELECT applied, outcome, current_stage' +
          ' FROM orch_lease.commit_stage_cas($1, $2, $3, $4, task_table => $5::regclass)',
        [task, grant.token, FROM_STAGE, TO_STAGE, taskTable]];
    let result;
    for (let attempt = 0; attempt < 5; attempt++) {
      result = (await db.query(commit, args)).rows[0];
      if (result.outcome !== 'retry') break;
      // retry: the commit could not run (a lock timeout, a deadlock); the lease is still ours.
      await new Promise((resolve) => setTimeout(resolve, 10 * (attempt + 1)));
    }
    // Every answer but retry ended the lease: applied, stage_mismatch, lease_lost, not_held,
    // not_found, invalid_transition, unconditional.
    ended = result.outcome !== 'retry';
    if (result.outcome !== 'applied' && result.outcome !== 'unconditional') {
      console.error(`${actor}: ${task} effect done, stage not written: ${result.outcome}` +
        (result.current_stage ? ` (stage ${result.current_stage})` : ''));
    }
    return grant.outcome === 'reclaimed' ? `reclaimed+${result.outcome}` : result.outcome;
  } finally {
    if (!ended) {
      await db.query('SELECT orch_lease.transition_lease_release($1, $2)', [task, grant.token])
        .catch((error) => console.error(`${actor}: could not release ${task}: ${error.message}`));
    }
  }
}

// Registers this process start (a fresh boot id) under `instance`, or under this host's first free slot,
// and takes back the leases its previous incarnation left. Returns the instance and the boot id.
async function register(db, instance, pid) {
  for (let slot = 0; ; slot++) {
    const name = instance || `node-actor-${os.hostname()}-${slot}`;
    const bootId = `${name}-${crypto.randomUUID()}`; // a fresh boot id per process start
    try {
      const recovered = await db.query(
        'SELECT work_item, token FROM orch_lease.transition_lease_recover($1, $2, $3)', [bootId, name, pid]);
      for (const lease of recovered.rows) {
        console.log(`${name}: recovered lease on ${lease.work_item} (token ${lease.token}) from a previous incarnation`);
      }
      return { name, bootId };
    } catch (error) {
      // 55006: a running process holds that instance name. A chosen name is an error; a slot, the next one.
      if (error.code !== '55006' || instance) throw error;
    }
  }
}

async function runActor(dsn, instance, taskTable, items) {
  const db = new Client(connection(dsn));
  await db.connect();
  const pid = process.pid;
  const { name, bootId } = await register(db, instance, pid);
  const outcomes = {};
  for (const task of items) {
    const outcome = await advance(db, task, name, pid, bootId, taskTable);
    outcomes[outcome] = (outcomes[outcome] || 0) + 1;
  }
  console.log(`${name}: ` + Object.keys(outcomes).sort().map((k) => `${k}=${outcomes[k]}`).join(' '));
  await db.end();
}

// The alerting bridge: every forced or stale reclaim arrives as JSON on channel orch_lease, in payload
// format version 3: {"version": 3, "events": [...]}, the takeovers of one statement, each naming its
// task table (event.task_table).
async function listen(dsn, seconds) {
  const db = new Client(connection(dsn));
  await db.connect();
  // Any role that may connect can NOTIFY orch_lease with anything: a payload that is not the server's is
  // logged and skipped, never the end of the listener.
  db.on('notification', (note) => {
    let events;
    try {
      events = JSON.parse(note.payload).events;
    } catch (error) {
      events = undefined;
    }
    if (!Array.isArray(events)) {
      console.error(`skipped a NOTIFY orch_lease payload that is not orch_lease's: ${JSON.stringify(note.payload.slice(0, 200))}`);
      return;
    }
    for (const event of events) {
      console.log(`ALERT ${event.event} ${event.task_table ? event.task_table + ' ' : ''}${event.work_item} from ${event.old_owner} (token ${event.old_token}): ${event.reason}`);
    }
  });
  await db.query('LISTEN orch_lease');
  console.log('listening');
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  await db.end();
}

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args.splice(at, 2)[1] : fallback;
};
const dsn = option('dsn');
const instance = option('instance', null);
const taskTable = option('task-table', null);
const seconds = option('listen');
(seconds ? listen(dsn, Number(seconds)) : runActor(dsn, instance, taskTable, args)).catch((error) => {
  // A database error as PostgreSQL sent it: SQLSTATE, message, detail, hint.
  console.error(`error ${error.code || ''}: ${error.message}` + (error.detail ? `\nDETAIL: ${error.detail}` : '') +
    (error.hint ? `\nHINT: ${error.hint}` : ''));
  process.exit(error.code === '55006' ? 2 : 1);
});
