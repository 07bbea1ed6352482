#!/usr/bin/env node
// Runs json-rules-engine (the reference) on a JSON array of cases read from stdin; writes one JSON array of
// outcomes to stdout. One node process for all cases. Used by test_rules_differential.py and bench/rules.py.
//
// A case: {rules, facts, options?, conditions?, engineFacts?, computed?, operators?, decorators?}
//   values may hold {"$js": "undefined" | "NaN" | "Infinity" | "-Infinity"} for what JSON cannot say;
//   `computed` names runtime facts computed by the library functions below (their calls are counted);
//   `operators`/`decorators` name custom ones from the libraries below.
// An outcome: {ok: true, results: [{name, priority, result, event, tree}], calls} or {ok: false, error, code}.
// Bench mode: {"bench": {rules, facts, iterations, warmup}} -> {runsPerSecond, seconds, iterations}.
'use strict'

const path = require('path')
const { Engine, Operator, OperatorDecorator } = require(path.join(__dirname, '..', '..', 'node_modules', 'json-rules-engine'))

function decode (v) {
  if (Array.isArray(v)) return v.map(decode)
  if (v && typeof v === 'object') {
    const keys = Object.keys(v)
    if (keys.length === 1 && keys[0] === '$js') {
      return { undefined, NaN, Infinity, '-Infinity': -Infinity }[v.$js]
    }
    const out = {}
    for (const k of keys) out[k] = decode(v[k])
    return out
  }
  return v
}

function encode (v) {
  if (v === undefined) return { $js: 'undefined' }
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return { $js: 'NaN' }
    if (v === Infinity) return { $js: 'Infinity' }
    if (v === -Infinity) return { $js: '-Infinity' }
    return v
  }
  if (typeof v === 'function') return { $js: 'function' }
  if (Array.isArray(v)) return v.map(encode)
  if (v && typeof v === 'object') {
    const out = {}
    for (const k of Object.keys(v)) out[k] = encode(v[k])
    return out
  }
  return v
}

// the condition tree node saw: kind, result, factResult, valueResult (absent when undefined)
function tree (c) {
  if (c === undefined || c === null) return null
  let kind = null
  if (Object.prototype.hasOwnProperty.call(c, 'any')) kind = 'any'
  else if (Object.prototype.hasOwnProperty.call(c, 'all')) kind = 'all'
  else if (Object.prototype.hasOwnProperty.call(c, 'not')) kind = 'not'
  const out = {}
  if (kind) {
    out.k = kind
    out.c = kind === 'not' ? [tree(c.not)] : c[kind].map(tree)
  } else if (Object.prototype.hasOwnProperty.call(c, 'condition')) {
    out.k = 'ref'
  } else {
    out.k = 'leaf'
    if (c.factResult !== undefined) out.f = encode(c.factResult)
    if (c.valueResult !== undefined) out.v = encode(c.valueResult)
  }
  if (c.result !== undefined) out.r = encode(c.result)
  return out
}

// custom operators, decorators and computed facts shared with the Python side of the test
const OPERATORS = {
  startsWith: [(a, b) => typeof a === 'string' && typeof b === 'string' && a.startsWith(b)],
  identity: [(a, b) => a],
  lengthIs: [(a, b) => a.length === b, Array.isArray]
}
const DECORATORS = {
  both: [(a, b, next) => next(a, b) && next(b, a)]
}
function computedFact (kind, calls, id) {
  return function (params, almanac) {
    calls[id] = (calls[id] || 0) + 1
    if (kind === 'calc') return params && typeof params === 'object' && 'x' in params ? params.x : 7
    if (kind === 'calcObj') return { a: { b: params && typeof params === 'object' && 'x' in params ? params.x : 3 }, list: [1, 2, 3] }
    throw new Error('unknown computed fact ' + kind)
  }
}

function buildEngine (c, calls) {
  const engine = new Engine([], decode(c.options || {}))
  for (const name of c.operators || []) engine.addOperator(new Operator(name, ...OPERATORS[name]))
  for (const name of c.decorators || []) engine.addOperatorDecorator(new OperatorDecorator(name, ...DECORATORS[name]))
  for (const [name, cond] of Object.entries(c.conditions || {})) engine.setCondition(name, decode(cond))
  for (const f of c.engineFacts || []) {
    const value = f.computed ? computedFact(f.computed, calls, f.id) : decode(f.value)
    const options = { priority: f.priority || 1 }
    if (f.cache === false) options.cache = false
    engine.addFact(f.id, value, options)
  }
  for (const r of c.rules) engine.addRule(decode(r))
  return engine
}

async function runCase (c) {
  const calls = {}
  try {
    const engine = buildEngine(c, calls)
    const facts = decode(c.facts || {})
    for (const [id, kind] of Object.entries(c.computed || {})) facts[id] = computedFact(kind, calls, id)
    const { almanac } = await engine.run(facts)
    const results = almanac.getResults().map(r => ({
      name: encode(r.name),
      priority: r.priority,
      result: encode(r.result),
      event: encode(r.event),
      tree: tree(r.conditions)
    }))
    return { ok: true, results, calls }
  } catch (e) {
    return { ok: false, error: String(e && e.message), code: (e && e.code) || null, calls }
  }
}

async function bench (b) {
  const engine = new Engine(decode(b.rules), decode(b.options || {}))
  const facts = decode(b.facts)
  for (let i = 0; i < (b.warmup || 1000); i++) await engine.run(facts)
  const n = b.iterations || 10000
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await engine.run(facts)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const check = (await engine.run(facts)).almanac.getResults().map(r => ({ name: r.name, result: r.result }))
  return { runsPerSecond: n / seconds, seconds, iterations: n, check }
}

// json-rules-engine can leave a rejected promise behind (a condition that failed next to a reference to a
// named condition that does not exist, which throws synchronously): node would end the process. Count them.
let unhandled = 0
process.on('unhandledRejection', () => { unhandled++ })

async function main () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  let output
  if (input && input.bench) {
    output = await bench(input.bench)
  } else {
    output = []
    for (const c of input) output.push(await runCase(c))
  }
  if (unhandled) process.stderr.write(`json-rules-engine left ${unhandled} unhandled rejection(s)\n`)
  process.stdout.write(JSON.stringify(output))
}

main().catch(e => { process.stderr.write(String(e && e.stack) + '\n'); process.exit(2) })
