#!/usr/bin/env node
// Renders DiceBear avatar styles to PNG task folders, one sub-folder per style.
//
// Usage: node render.mjs '<json>'   (or: node render.mjs --list)
//
// JSON arguments:
//   out_dir     string   output root; must contain "{size}" when several sizes are given
//   styles      string[] | null   kebab-case style names; null = every style in DEFAULT_STYLES
//   exclude     string[] styles to skip (applied after `styles`)
//   heldout     string[] | null   styles written under OUT/heldout/, the rest under OUT/train/;
//                                 null = no split, every style under OUT/<style>/
//   count       int      images per style
//   sizes       int[]    square output sizes in px
//   seed        int      base seed; image i of style s uses the DiceBear seed "<seed>-<s>-<i>"
//   background  string   "#rrggbb", fills every pixel the avatar leaves transparent; "random": a colour
//                        drawn per image from its seed (white for about a third of the images)
//
// Output: OUT/[train|heldout/]<style>/<index:05d>.png, OUT/ATTRIBUTION.json, OUT/ATTRIBUTION.md.
// stdout carries one JSON object per line ({"event": "progress" | "done" | "error", ...}) for the
// Python caller; stderr carries human-readable progress. Exit code 2 = bad arguments, 1 = failure.
//
// Same arguments give byte-identical files: DiceBear's PRNG is seeded per image, resvg's PNG
// encoder is deterministic, and nothing in ATTRIBUTION.json depends on time or on the output path.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createAvatar } from '@dicebear/core';
import * as collection from '@dicebear/collection';
import { Resvg } from '@resvg/resvg-js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// `initials` draws text, whose glyphs come from whatever fonts the machine has: its PNGs are not
// reproducible across machines and it is lettering, not a drawing style. Rendered only on request.
const TEXT_STYLES = new Set(['initials']);

// resvg's pixel buffers live outside the JS heap and are freed by N-API finalizers, which Node
// runs from the event loop: a purely synchronous loop would hold every image until exit
// (~100 KB per 128 px image). Yielding every few hundred images keeps memory flat.
const YIELD_EVERY = 256;

function yieldToEventLoop() {
  return new Promise((resolve) => setImmediate(resolve));
}

class ArgError extends Error {}

function kebab(name) {
  return name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

const STYLES = new Map(Object.entries(collection).map(([key, style]) => [kebab(key), style]));
const DEFAULT_STYLES = [...STYLES.keys()].filter((s) => !TEXT_STYLES.has(s)).sort();

function readVersion(pkg) {
  const file = path.join(HERE, 'node_modules', ...pkg.split('/'), 'package.json');
  return JSON.parse(fs.readFileSync(file, 'utf8')).version;
}

// A node_modules left over from an older package.json would silently render other pictures.
function checkInstalledVersions() {
  const wanted = JSON.parse(fs.readFileSync(path.join(HERE, 'package.json'), 'utf8')).dependencies;
  for (const [pkg, version] of Object.entries(wanted)) {
    const have = readVersion(pkg);
    if (have !== version) {
      throw new ArgError(
        `${pkg} ${have} is installed but package.json pins ${version}; ` +
          `run "npm ci" in ${HERE} to install the pinned versions.`,
      );
    }
  }
}

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function log(message) {
  process.stderr.write(message + '\n');
}

function parseArgs(raw) {
  let a;
  try {
    a = JSON.parse(raw);
  } catch (e) {
    throw new ArgError(`arguments are not valid JSON (${e.message}); pass one JSON object as the only argument.`);
  }
  if (a === null || typeof a !== 'object' || Array.isArray(a)) {
    throw new ArgError('arguments must be one JSON object, e.g. {"out_dir": "out", "count": 10, "sizes": [64]}.');
  }
  const known = new Set(['out_dir', 'styles', 'exclude', 'heldout', 'count', 'sizes', 'seed', 'background']);
  const unknown = Object.keys(a).filter((k) => !known.has(k));
  if (unknown.length) throw new ArgError(`unknown argument(s) ${unknown.join(', ')}; known: ${[...known].join(', ')}.`);

  if (typeof a.out_dir !== 'string' || !a.out_dir) throw new ArgError('"out_dir" must be a non-empty string.');
  if (!Number.isInteger(a.count) || a.count < 1) throw new ArgError(`"count" must be an integer >= 1, got ${JSON.stringify(a.count)}.`);
  const sizes = a.sizes ?? [64];
  if (!Array.isArray(sizes) || !sizes.length || !sizes.every((s) => Number.isInteger(s) && s >= 8 && s <= 4096)) {
    throw new ArgError(`"sizes" must be a non-empty list of integers in 8..4096, got ${JSON.stringify(a.sizes)}.`);
  }
  if (new Set(sizes).size !== sizes.length) throw new ArgError(`"sizes" has duplicates: ${JSON.stringify(sizes)}.`);
  if (sizes.length > 1 && !a.out_dir.includes('{size}')) {
    throw new ArgError('several sizes need "{size}" in "out_dir" (e.g. "data/dicebear{size}") so they do not overwrite each other.');
  }
  const seed = a.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new ArgError(`"seed" must be an integer >= 0, got ${JSON.stringify(a.seed)}.`);
  const background = a.background ?? '#ffffff';
  if (typeof background !== 'string' || !(/^#[0-9a-f]{6}$/.test(background) || background === 'random')) {
    throw new ArgError(`"background" must be "#rrggbb" in lower case or "random", got ${JSON.stringify(a.background)}.`);
  }
  const nameList = (key, value) => {
    if (value === null || value === undefined) return null;
    if (!Array.isArray(value) || !value.every((s) => typeof s === 'string')) {
      throw new ArgError(`"${key}" must be a list of style names or null.`);
    }
    const bad = value.filter((s) => !STYLES.has(s));
    if (bad.length) {
      throw new ArgError(`"${key}" names unknown style(s) ${bad.join(', ')}; DiceBear ${readVersion('@dicebear/collection')} has: ${[...STYLES.keys()].sort().join(', ')}.`);
    }
    return value;
  };
  const requested = nameList('styles', a.styles);
  const exclude = new Set(nameList('exclude', a.exclude) ?? []);
  const heldout = nameList('heldout', a.heldout);
  // Sorted and de-duplicated so the order of the request never changes the output.
  const styles = [...new Set(requested ?? DEFAULT_STYLES)].filter((s) => !exclude.has(s)).sort();
  if (!styles.length) throw new ArgError('no style left to render after "exclude"; request at least one style.');
  return { outDir: a.out_dir, styles, heldout: heldout && new Set(heldout), count: a.count, sizes, seed, background };
}

function splitOf(style, heldout) {
  if (heldout === null) return null;
  return heldout.has(style) ? 'heldout' : 'train';
}

function styleDir(root, style, heldout) {
  const split = splitOf(style, heldout);
  return split === null ? path.join(root, style) : path.join(root, split, style);
}

// Images from an earlier run with a larger count would otherwise stay beside the new ones.
function removeStaleImages(dir, count) {
  for (const name of fs.readdirSync(dir)) {
    const m = /^(\d+)\.png$/.exec(name);
    if (m && Number(m[1]) >= count) fs.unlinkSync(path.join(dir, name));
  }
}

// FNV-1a of a string, then mulberry32: a few reproducible uniform numbers per image, the same in any Node.
function uniforms(key, n) {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
  const out = [];
  for (let i = 0; i < n; i++) {
    h = (h + 0x6d2b79f5) >>> 0;
    let t = Math.imul(h ^ (h >>> 15), h | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out.push(((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

// "random": white for about a third of the images, else a flat colour of any hue, from pastel to
// saturated (held-out styles such as thumbs and bottts-neutral draw on such backgrounds).
function backgroundOf(args, key) {
  if (args.background !== 'random') return args.background;
  const [white, hue, sat, light] = uniforms(`${key}-background`, 4);
  if (white < 1 / 3) return '#ffffff';
  const s = 0.35 + 0.6 * sat;
  const l = 0.45 + 0.45 * light;
  const f = (k) => {
    const x = (k + hue * 12) % 12;
    const v = l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(x - 3, 9 - x, 1));
    return Math.round(v * 255).toString(16).padStart(2, '0');
  };
  return `#${f(0)}${f(8)}${f(4)}`;
}

async function renderStyle(style, dir, args, size) {
  const def = STYLES.get(style);
  // Text styles need the system fonts; everything else renders without them (faster, and
  // independent of the machine's font set).
  const font = { loadSystemFonts: TEXT_STYLES.has(style) };
  fs.mkdirSync(dir, { recursive: true });
  removeStaleImages(dir, args.count);
  for (let i = 0; i < args.count; i++) {
    // The style's own background colours are kept: in the *-neutral styles, fun-emoji, glass,
    // shapes, ... the background *is* the face or the picture. The solid colour fills the rest.
    const key = `${args.seed}-${style}-${i}`;
    const svg = createAvatar(def, { seed: key, size }).toString();
    const png = new Resvg(svg, { fitTo: { mode: 'width', value: size }, background: backgroundOf(args, key), font })
      .render()
      .asPng();
    fs.writeFileSync(path.join(dir, String(i).padStart(5, '0') + '.png'), png);
    if ((i + 1) % YIELD_EVERY === 0) await yieldToEventLoop();
  }
  await yieldToEventLoop();
}

function attribution(args, size, versions) {
  const styles = {};
  for (const style of args.styles) {
    const m = STYLES.get(style).meta ?? {};
    styles[style] = {
      split: splitOf(style, args.heldout),
      title: m.title ?? null,
      creator: m.creator ?? null,
      source: m.source ?? null,
      homepage: m.homepage ?? null,
      license: { name: m.license?.name ?? null, url: m.license?.url ?? null },
      package: `@dicebear/${style}`,
      count: args.count,
    };
  }
  return {
    dicebear_version: versions.core,
    collection_version: versions.collection,
    renderer: `@resvg/resvg-js ${versions.resvg}`,
    library: { name: 'DiceBear', url: 'https://www.dicebear.com', license: 'MIT', author: 'Florian Körner' },
    size,
    count_per_style: args.count,
    seed: args.seed,
    seed_scheme: '<seed>-<style>-<index>',
    background: args.background,
    styles,
  };
}

function attributionMarkdown(att) {
  const cell = (s) => String(s ?? '').replace(/\|/g, '\\|');
  const link = (text, url) => (url ? `[${cell(text)}](${url})` : cell(text));
  const lines = [
    '# Attribution',
    '',
    `These images were rendered from the [DiceBear](https://www.dicebear.com) avatar library ` +
      `(@dicebear/core ${att.dicebear_version}, @dicebear/collection ${att.collection_version}; ` +
      `library code MIT, © Florian Körner) with ${att.renderer}.`,
    '',
    `Changes made: each avatar was generated from the seed "${att.seed_scheme}" with seed ${att.seed}, ` +
      `rasterised to a ${att.size}x${att.size} PNG, and its transparent area filled with ` +
      (att.background === 'random' ? 'a colour drawn per image from its seed (white for about a third).' : `${att.background}.`),
    '',
    'The artwork of each style belongs to its creator and is used under the license below. ' +
      'CC BY 4.0 styles require crediting the creator, linking the license and stating the changes ' +
      'when the images (or works made from them) are shared.',
    '',
    '| Style | Split | Title | Creator | License | Source | Images |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const [style, s] of Object.entries(att.styles)) {
    lines.push(
      `| ${style} | ${s.split ?? '-'} | ${cell(s.title)} | ${link(s.creator, s.homepage)} | ` +
        `${link(s.license.name, s.license.url)} | ${s.source ?? ''} | ${s.count} |`,
    );
  }
  return lines.join('\n') + '\n';
}

async function main(argv) {
  checkInstalledVersions();
  if (argv[0] === '--list') {
    const list = {};
    for (const style of [...STYLES.keys()].sort()) list[style] = STYLES.get(style).meta ?? {};
    emit({ event: 'styles', default: DEFAULT_STYLES, styles: list });
    return;
  }
  if (argv.length !== 1) throw new ArgError('pass the arguments as one JSON object, e.g. node render.mjs \'{"out_dir": "out", "count": 10, "sizes": [64]}\'.');
  const args = parseArgs(argv[0]);
  for (const style of args.styles) {
    if (TEXT_STYLES.has(style)) log(`warning: "${style}" draws text with the system fonts; its PNGs differ between machines with other fonts.`);
  }
  const versions = {
    core: readVersion('@dicebear/core'),
    collection: readVersion('@dicebear/collection'),
    resvg: readVersion('@resvg/resvg-js'),
  };
  const total = args.styles.length * args.sizes.length * args.count;
  const t0 = performance.now();
  let done = 0;
  const outputs = [];
  for (const size of args.sizes) {
    const root = args.outDir.replaceAll('{size}', String(size));
    fs.mkdirSync(root, { recursive: true });
    const written = {};
    for (const [k, style] of args.styles.entries()) {
      const dir = styleDir(root, style, args.heldout);
      const t = performance.now();
      await renderStyle(style, dir, args, size);
      done += args.count;
      written[style] = { split: splitOf(style, args.heldout), dir, count: args.count };
      log(`[${k + 1}/${args.styles.length}] ${style} ${size}px: ${args.count} images in ${((performance.now() - t) / 1000).toFixed(2)} s`);
      emit({ event: 'progress', done, total, style, size });
    }
    const att = attribution(args, size, versions);
    fs.writeFileSync(path.join(root, 'ATTRIBUTION.json'), JSON.stringify(att, null, 2) + '\n');
    fs.writeFileSync(path.join(root, 'ATTRIBUTION.md'), attributionMarkdown(att));
    outputs.push({ size, out_dir: root, styles: written, attribution: path.join(root, 'ATTRIBUTION.json') });
  }
  const seconds = (performance.now() - t0) / 1000;
  log(`rendered ${total} images in ${seconds.toFixed(1)} s`);
  emit({ event: 'done', images: total, seconds, versions, outputs });
}

try {
  await main(process.argv.slice(2));
} catch (e) {
  const message = e instanceof ArgError ? e.message : `${e.stack ?? e}`;
  log(`render.mjs: error: ${message}`);
  emit({ event: 'error', kind: e instanceof ArgError ? 'arguments' : 'failure', message });
  process.exitCode = e instanceof ArgError ? 2 : 1;
}
