"""Property-based fuzzing of the two readers strangers' files reach: checkpoints and workflows.

Whatever the bytes or the JSON, only the documented typed errors may escape:
`CheckpointError` from `meta_core.checkpoint.read_header` / `load` / `read_metadata`, and `WorkflowError`
from `headless.load_workflow` / `detect_format` / `ui_to_api` / `check_prompt` (`convert_workflow` and
`validate_prompt` collect problems and never raise). A checkpoint that does load has finite weights.

Each target runs a smoke run by default (`SMOKE` cases, a few seconds) and `SLOW` (10,000) cases with
`--runslow`; the slow tests assert they really ran that many. Hypothesis is derandomized, keeps no
example database and caches in the temp folder, so CI runs are reproducible and nothing is written into the
repository.
"""
from __future__ import annotations

import copy
import json
import math
import struct
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import headless
from headless import WorkflowError
from meta_core import checkpoint
from meta_core.checkpoint import DTYPE_SIZES
from meta_core.errors import CheckpointError
from tests.helpers import tiny_model

ROOT = Path(__file__).resolve().parents[1]
# Hypothesis caches (collected constants, Unicode tables) go to the temp folder, not .hypothesis/ in the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "comfyui-metagan-hypothesis")
SMOKE = 200
SLOW = 10_000
WORKFLOW_FILES = (sorted((ROOT / "example_workflows").glob("*.json"))
                  + sorted((ROOT / "example_workflows" / "api").glob("*.json")))


def fuzz(strategy, body, examples: int) -> tuple[int, float]:
    """Run `body` on `examples` cases drawn from `strategy`; returns (cases run, seconds)."""
    count = [0]

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                     HealthCheck.large_base_example])
    @given(strategy)
    def run(case):
        count[0] += 1
        body(case)

    start = time.perf_counter()
    run()
    return count[0], time.perf_counter() - start


def check_count(count: int, examples: int) -> None:
    assert count >= examples, f"only {count} of {examples} cases ran"


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_ckpt")


@pytest.fixture(scope="module")
def valid(ckpt_dir):
    """A tiny valid checkpoint: (bytes, header length, header dict)."""
    model = tiny_model(16)
    model.provenance = {"command": "fuzz"}
    data = checkpoint.save(model, ckpt_dir / "valid.safetensors").read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return data, n, json.loads(data[8:8 + n])


def load_must_be_typed(path: Path) -> None:
    """Every reader either succeeds or raises a CheckpointError; a loaded model is finite."""
    for read in (checkpoint.read_header, checkpoint.read_metadata):
        try:
            read(path)
        except CheckpointError:
            pass
    try:
        model = checkpoint.load(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        return
    assert all(bool(torch.isfinite(t).all()) for t in model.state_dict().values())


JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats()
                | st.text(max_size=12))


def json_values(keys=st.text(max_size=8), scalars=JSON_SCALARS, max_leaves=20):
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4),
                        max_leaves=max_leaves)


def _with_prefix(header: bytes, tail: bytes, delta: int) -> bytes:
    return struct.pack("<Q", max(len(header) + delta, 0)) + header + tail


# Raw bytes: pure noise, and noise behind a plausible length prefix (so the JSON stage is reached).
RAW_BYTES = st.one_of(
    st.binary(max_size=256),
    st.builds(_with_prefix, st.binary(max_size=128), st.binary(max_size=64), st.integers(-4, 4)),
    st.builds(_with_prefix, st.text(max_size=64).map(lambda t: ("{" + t).encode("utf-8", "surrogatepass")),
              st.binary(max_size=64), st.integers(-2, 2)),
    st.sampled_from([b"\x80\x04\x95", b"PK\x03\x04", b"\x80\x02}q\x00.", b"", b"{}", b"\x02" + b"\x00" * 7 + b"{}"]),
)


def _entry_strategy():
    dims = st.integers(-3, 2 ** 65) | st.integers(0, 8)
    shape = st.lists(dims, max_size=4) | json_values(max_leaves=4)
    offsets = st.lists(st.integers(-8, 2 ** 65) | st.integers(0, 64), max_size=3) | json_values(max_leaves=4)
    dtype = st.sampled_from(sorted(DTYPE_SIZES)) | st.text(max_size=5)
    entry = st.fixed_dictionaries({"dtype": dtype, "shape": shape, "data_offsets": offsets})
    consistent = st.builds(lambda d, s, b: {"dtype": d, "shape": s,
                                            "data_offsets": [b, b + math.prod(s) * DTYPE_SIZES[d]]},
                           st.sampled_from(sorted(DTYPE_SIZES)), st.lists(st.integers(0, 6), max_size=3),
                           st.integers(0, 64))
    return entry | consistent | json_values(max_leaves=6)


def _config_leaves(text) -> list[tuple[str, ...]]:
    """Paths to the leaves of a stored config (JSON object text), [] for anything else."""
    try:
        cfg = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return []

    def walk(node, path):
        if isinstance(node, dict) and node:
            return [leaf for k, v in node.items() for leaf in walk(v, path + (k,))]
        return [path] if path else []
    return walk(cfg, ())


@st.composite
def lying_files(draw, valid_header, valid_data: bytes):
    """Structured headers: well-formed JSON whose entries, sizes, offsets and metadata lie."""
    header = {}
    names = [k for k in valid_header if k != "__metadata__"]
    real_table = draw(st.integers(0, 3)) > 0
    if real_table:  # the real tensor table and data, some entries damaged, dropped, added or renamed
        header.update({k: dict(v) for k, v in valid_header.items() if k != "__metadata__"})
        for name in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
            op = draw(st.integers(0, 3))
            if op == 0:
                del header[name]
            elif op == 1:
                header[name + draw(st.sampled_from(["x", ".extra", ""]))] = header.pop(name)
            elif op == 2:
                extra_dim = draw(st.lists(st.integers(0, 2), max_size=1))
                header[name]["shape"] = list(reversed(header[name]["shape"])) + extra_dim
            else:
                header[name] = draw(_entry_strategy())
        tail = valid_data
        cut = draw(st.integers(-8, 8))
        tail = tail[:cut] if cut < 0 else tail + bytes(cut)
    else:
        for name in draw(st.lists(st.sampled_from(names) | st.text(max_size=6), max_size=5)):
            header[name] = draw(_entry_strategy())
        tail = draw(st.binary(max_size=128))
    metadata = dict(valid_header["__metadata__"])
    fields = sorted(metadata) + ["format_version", "model_kind", "base_hash"]
    for key in draw(st.lists(st.sampled_from(fields) | st.text(max_size=6), max_size=4)):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            metadata.pop(key, None)
        elif choice == 1:
            metadata[key] = draw(st.text(max_size=20) | st.sampled_from(["0", "1", "2", "-1", "99", "1e3", " 1 ",
                                                                         "metagan", "metagan-delta", "{}", "[]"]))
        elif choice == 2 and _config_leaves(metadata.get(key)):  # one field of a stored config set to a lie
            cfg = json.loads(metadata[key])
            path = draw(st.sampled_from(_config_leaves(metadata[key])))
            spot = cfg
            for part in path[:-1]:
                spot = spot[part]
            spot[path[-1]] = draw(json_values(max_leaves=3) | st.integers(-2, 2 ** 40) | st.sampled_from([
                0, 1, 3, 1.5, 8, 17, 256, 512, 10 ** 6, 10 ** 12, "full", "reptile", [0.0, 0.99], [], True]))
            metadata[key] = json.dumps(cfg)
        else:
            metadata[key] = json.dumps(draw(json_values(max_leaves=5)))
    if draw(st.integers(0, 9)) == 0:
        header["__metadata__"] = draw(json_values(max_leaves=5))
    elif draw(st.integers(0, 9)) > 0:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + tail


@st.composite
def mutated_files(draw, data: bytes, n: int):
    """The valid file with bytes flipped, inserted, deleted or cut, mostly in the header."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        in_header = draw(st.integers(0, 9)) < 7
        hi = min(len(buf), 8 + n) if in_header else len(buf)
        if hi == 0:
            break
        pos = draw(st.integers(0, hi - 1))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "nan"]))
        if op == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            buf[pos] = draw(st.sampled_from([0, 0x22, 0x2C, 0x30, 0x39, 0x5B, 0x5D, 0x7B, 0x7D, 0xFF]))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del buf[pos:pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del buf[pos:]
        elif len(buf) > 8 + n + 4:  # a float32 NaN into the tensor data
            at = draw(st.integers(8 + n, len(buf) - 4)) // 4 * 4
            buf[at:at + 4] = struct.pack("<f", float("nan"))
    return bytes(buf)


def _file_body(ckpt_dir):
    path = ckpt_dir / "case.safetensors"

    def body(data: bytes) -> None:
        path.write_bytes(data)
        load_must_be_typed(path)
    return body


def _checkpoint_targets(valid):
    data, n, header = valid
    return {"raw_bytes": RAW_BYTES, "lying_headers": lying_files(header, data[8 + n:]),
            "mutated_valid_file": mutated_files(data, n)}


@pytest.mark.parametrize("target", ["raw_bytes", "lying_headers", "mutated_valid_file"])
def test_checkpoint_reader_fuzz_smoke(target, valid, ckpt_dir):
    count, _ = fuzz(_checkpoint_targets(valid)[target], _file_body(ckpt_dir), SMOKE)
    assert count >= SMOKE // 2


@pytest.mark.slow
@pytest.mark.parametrize("target", ["raw_bytes", "lying_headers", "mutated_valid_file"])
def test_checkpoint_reader_fuzz_10k(target, valid, ckpt_dir, capsys):
    count, seconds = fuzz(_checkpoint_targets(valid)[target], _file_body(ckpt_dir), SLOW)
    with capsys.disabled():
        print(f"\n[fuzz] checkpoint {target}: {count} cases in {seconds:.1f} s")
    check_count(count, SLOW)


def test_fuzz_baseline_file_loads_and_a_nan_in_its_data_is_caught(valid, ckpt_dir):
    # The file the mutations start from loads, and one NaN in its data is caught: the fuzzers start from a real case.
    data, n, header = valid
    path = ckpt_dir / "probe.safetensors"
    path.write_bytes(data)
    assert checkpoint.load(path).resolution == 16
    buf = bytearray(data)
    buf[8 + n:8 + n + 4] = struct.pack("<f", float("nan"))
    path.write_bytes(bytes(buf))
    with pytest.raises(CheckpointError, match="NaN"):
        checkpoint.load(path)


# ---------------------------------------------------------------------------------------------
# Workflows
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def defs():
    return headless.build_registry([str(ROOT)]).node_defs()


@pytest.fixture(scope="module")
def shipped():
    return [json.loads(p.read_text()) for p in WORKFLOW_FILES]


UI_KEYS = ["nodes", "links", "id", "type", "mode", "inputs", "outputs", "widgets_values", "link", "links", "name",
           "widget", "title", "origin_id", "origin_slot", "target_id", "target_slot", "extra", "definitions",
           "subgraphs", "groupNodes", "class_type", "_meta", "prompt", "__value__"]


def workflow_pipeline(data, defs) -> None:
    """Everything the runner does with a parsed workflow before running it."""
    # Every problem or warning is a Problem with a stable snake_case kind and a message, and the node it
    # blames is one of the document's own nodes (as the user sees ids: strings), never an invented id.
    api_ids = {str(k) for k in data} if isinstance(data, dict) else set()
    raw_nodes = data.get("nodes") if isinstance(data, dict) else None
    ui_ids = {str(n["id"]) for n in raw_nodes if isinstance(n, dict) and "id" in n} if isinstance(raw_nodes,
                                                                                                  list) else set()
    for result, ids in ((headless.convert_workflow(data, defs) if isinstance(data, dict) else None, ui_ids),
                        (headless.validate_prompt(data, defs), api_ids),
                        (headless.validate_prompt(data, defs, strict=True), api_ids),
                        (headless.validate_prompt(data, defs, check_values=False), api_ids)):
        if result is None:
            continue
        for p in list(result.problems) + list(result.warnings):
            assert isinstance(p, headless.Problem), p
            assert isinstance(p.kind, str) and p.kind[:1].isalpha() and p.kind.isidentifier() and p.kind.islower() \
                and p.kind.isascii(), p.kind
            assert isinstance(p.message, str) and p.message.strip(), repr(p)
            assert p.node_id is None or p.node_id in ids, (p.node_id, sorted(ids)[:20])
    try:
        conversion = headless.to_api_prompt(data, defs)
    except WorkflowError:
        return
    try:
        headless.ui_to_api(data, defs) if isinstance(data, dict) and isinstance(data.get("nodes"), list) else None
    except WorkflowError:
        pass
    try:
        validation = headless.check_prompt(conversion.prompt, defs)
    except WorkflowError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return
    order = headless.execution_order(validation.prompt, defs)  # a valid prompt has an order (no cycle)
    assert set(order) == validation.needed


def _mutate(draw, doc):
    """Replace, delete, retype or duplicate one spot of a JSON document."""
    doc = copy.deepcopy(doc)
    parent, key = None, None
    node = doc
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)) > 0:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, draw(st.sampled_from(keys))
        node = node[key]
    op = draw(st.sampled_from(["replace", "delete", "scalar", "duplicate", "swap_type"]))
    if parent is None:
        return draw(json_values(keys=st.sampled_from(UI_KEYS))) if op == "replace" else doc
    if op == "delete":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(node))
    elif op == "swap_type":
        parent[key] = [node] if not isinstance(node, list) else {"0": node}
    elif op == "scalar":
        parent[key] = draw(st.sampled_from([None, 0, -1, 1, 2, 4, 10 ** 30, 0.5, float("nan"), float("inf"), "", "1",
                                            "x", True, [], {}, [1], ["1", 0], ["999", 0], ["1", 9], ["3", 0]]))
    else:
        parent[key] = draw(json_values(keys=st.sampled_from(UI_KEYS) | st.text(max_size=6), max_leaves=8))
    return doc


@st.composite
def mutated_workflows(draw, docs):
    doc = draw(st.sampled_from(docs))
    for _ in range(draw(st.integers(1, 4))):
        doc = _mutate(draw, doc)
    return doc


def _plausible_value(draw, input_type, options):
    """A value a widget could hold: its default, a bound, a choice, or one step beyond."""
    if isinstance(input_type, list):
        return draw(st.sampled_from(input_type) if input_type else st.just(""))
    if draw(st.integers(0, 3)) and "default" in options:
        return options["default"]
    candidates = [options.get("default", 0)]
    for bound in ("min", "max"):
        if bound in options:
            candidates += [options[bound], options[bound] + (-1 if bound == "min" else 1)]
    if input_type == "FLOAT":
        candidates += [float("nan"), float("inf"), 0.5]
    return draw(st.sampled_from(candidates))


@st.composite
def random_api_prompts(draw, defs):
    """API prompts over real node types, inputs filled from each node's definition: links mostly to a node
    giving the right type (else to any node or slot, missing ones, cycles), values at, inside and just beyond
    their ranges, and junk. Many are valid, so execution ordering is exercised too."""
    node_types = sorted(defs)
    outputs = sorted(t for t, d in defs.items() if d.output_node)
    ids = [str(i) for i in range(1, draw(st.integers(1, 7)) + 1)]
    types = {nid: draw(st.sampled_from(node_types)) for nid in ids}
    if draw(st.booleans()):
        types[ids[-1]] = draw(st.sampled_from(outputs))
    if draw(st.integers(0, 29)) == 0:
        types[draw(st.sampled_from(ids))] = draw(st.text(max_size=5))

    def link_to(wanted):
        givers = [(nid, slot) for nid in ids for slot, out in enumerate(getattr(defs.get(types[nid]), "outputs", ()))
                  if out == wanted]
        if givers and draw(st.integers(0, 9)):
            return list(draw(st.sampled_from(givers)))
        return [draw(st.sampled_from(ids + ["99"])), draw(st.sampled_from([0, 0, 1, 2, -1]))]

    prompt = {}
    for nid in ids:
        d = defs.get(types[nid])
        inputs = {}
        for name, (input_type, options) in ({**d.required, **d.optional} if d else {}).items():
            roll = draw(st.integers(0, 39))
            if roll == 0:
                continue  # missing
            if roll == 1:
                inputs[name] = draw(json_values(max_leaves=3))
            elif isinstance(input_type, list) or input_type in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                inputs[name] = link_to(input_type) if roll == 2 else _plausible_value(draw, input_type, options)
            else:
                inputs[name] = link_to(input_type)
        prompt[nid] = {"class_type": types[nid], "inputs": inputs}
        if draw(st.integers(0, 3)) == 0:
            prompt[nid]["_meta"] = draw(st.fixed_dictionaries({"title": JSON_SCALARS}) | JSON_SCALARS)
    return prompt


@st.composite
def random_ui_workflows(draw, node_types):
    """UI workflows with random nodes, slots and links (dangling, cyclic, through reroutes and bypassed nodes)."""
    n = draw(st.integers(1, 6))
    link_ids = list(range(1, draw(st.integers(0, 8)) + 1))
    link_type = st.sampled_from(["IMAGE", "META_GAN", "INT", "*", None])
    links = [[lid, draw(st.integers(0, n + 1)), draw(st.integers(-1, 2)), draw(st.integers(0, n + 1)),
              draw(st.integers(0, 2)), draw(link_type)] for lid in link_ids]
    nodes = []
    for nid in range(1, n + 1):
        node = {"id": nid, "type": draw(st.sampled_from(node_types + ["Reroute", "PrimitiveNode", "Note"])),
                "mode": draw(st.sampled_from([0, 0, 0, 2, 4])),
                "inputs": [{"name": draw(st.sampled_from(["meta_gan", "references", "images", "seed", "", "x"])),
                            "type": draw(st.sampled_from(["IMAGE", "META_GAN", "INT", "*"])),
                            "link": draw(st.sampled_from(link_ids + [None, 999])) if link_ids else None}
                           for _ in range(draw(st.integers(0, 3)))],
                "widgets_values": draw(st.lists(JSON_SCALARS, max_size=7) | json_values(max_leaves=4))}
        nodes.append(node)
    return {"nodes": nodes, "links": links, "version": 0.4}


def _workflow_targets(defs, shipped):
    types = sorted(defs)
    ui_docs = [d for d in shipped if "nodes" in d]
    return {
        "arbitrary_json": st.one_of(
            json_values(keys=st.sampled_from(UI_KEYS) | st.text(max_size=6), max_leaves=40),
            st.fixed_dictionaries({"nodes": st.lists(json_values(keys=st.sampled_from(UI_KEYS), max_leaves=10)),
                                   "links": json_values(max_leaves=10)},
                                  optional={"extra": json_values(keys=st.sampled_from(UI_KEYS)),
                                            "definitions": json_values(keys=st.sampled_from(UI_KEYS))}),
            st.dictionaries(st.text(max_size=3), st.fixed_dictionaries(
                {"class_type": st.sampled_from(types) | JSON_SCALARS},
                optional={"inputs": json_values(keys=st.sampled_from(UI_KEYS) | st.text(max_size=6)),
                          "_meta": json_values(keys=st.just("title"))}), min_size=1, max_size=5)),
        "mutated_shipped": mutated_workflows(shipped),
        "mutated_ui_structure": mutated_workflows(ui_docs),
        "random_api_graphs": random_api_prompts(defs),
        "random_ui_graphs": random_ui_workflows(types),
    }


WORKFLOW_TARGETS = ["arbitrary_json", "mutated_shipped", "mutated_ui_structure", "random_api_graphs",
                    "random_ui_graphs"]


@pytest.mark.parametrize("target", WORKFLOW_TARGETS)
def test_workflow_validator_fuzz_smoke(target, defs, shipped):
    count, _ = fuzz(_workflow_targets(defs, shipped)[target], lambda d: workflow_pipeline(d, defs), SMOKE)
    assert count >= SMOKE // 2


@pytest.mark.slow
@pytest.mark.parametrize("target", WORKFLOW_TARGETS)
def test_workflow_validator_fuzz_10k(target, defs, shipped, capsys):
    count, seconds = fuzz(_workflow_targets(defs, shipped)[target], lambda d: workflow_pipeline(d, defs), SLOW)
    with capsys.disabled():
        print(f"\n[fuzz] workflow {target}: {count} cases in {seconds:.1f} s")
    check_count(count, SLOW)


# load_workflow: the bytes of a file, as JSON text or as noise.
WORKFLOW_BYTES = st.one_of(
    st.binary(max_size=256),
    json_values(keys=st.sampled_from(UI_KEYS) | st.text(max_size=6), max_leaves=30).map(
        lambda v: json.dumps(v).encode()),
    st.builds(lambda depth, digits: ("[" * depth + "1" * digits + "]" * depth).encode(),
              st.integers(0, 5000), st.integers(1, 6000)),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@pytest.fixture(scope="module")
def wf_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_wf")


def _load_body(wf_dir, defs):
    path = wf_dir / "case.json"

    def body(data: bytes) -> None:
        path.write_bytes(data)
        try:
            loaded = headless.load_workflow(path)
        except WorkflowError as exc:
            assert exc.problems and str(exc)
            return
        workflow_pipeline(loaded.data, defs)
    return body


def test_workflow_loader_fuzz_smoke(wf_dir, defs):
    count, _ = fuzz(WORKFLOW_BYTES, _load_body(wf_dir, defs), SMOKE)
    assert count >= SMOKE // 2


@pytest.mark.slow
def test_workflow_loader_fuzz_10k(wf_dir, defs, capsys):
    count, seconds = fuzz(WORKFLOW_BYTES, _load_body(wf_dir, defs), SLOW)
    with capsys.disabled():
        print(f"\n[fuzz] workflow file bytes: {count} cases in {seconds:.1f} s")
    check_count(count, SLOW)


# Crashes the fuzzers and probes found (each escaped as a bare exception before its fix); kept as examples.
FOUND = [
    {"²": {"class_type": None}},                                     # "²".isdigit() but int("²") fails
    {"1" * 5000: {"class_type": "SaveImage", "inputs": {}}},         # a node id int() refuses (4300 digits)
    {"nodes": [{"id": 1, "type": "SaveImage", "inputs": 5}], "links": []},
    {"nodes": [{"id": 1, "type": "SaveImage", "inputs": [{"link": 1, "widget": "w"}]}],
     "links": [[1, 1, 0, 1, 0, "X"]]},
    {"nodes": [], "links": [[1, 1, float("inf"), 2, 0, "X"]]},
    {"nodes": [], "links": [], "extra": [1], "definitions": "x"},
    {"nodes": [], "links": [], "extra": {"groupNodes": [1]}, "definitions": {"subgraphs": {"a": 1}}},
    {"1": {"class_type": "SaveImage", "inputs": [1]}},
    {"1": {"class_type": "SaveImage", "inputs": {}, "_meta": [1]}},
]


@pytest.mark.parametrize("case", FOUND, ids=range(len(FOUND)))
def test_found_workflow_crashes_stay_fixed(case, defs):
    workflow_pipeline(case, defs)
