"""Writes the shipped workflows (workflows/*.json, ComfyUI's UI format 0.4) from short descriptions.

    python tools/make_workflows.py            # rewrite every workflow
    python tools/make_workflows.py --check    # exit 1 if a committed file differs from what this makes
    python tools/make_workflows.py --thumbnails   # also run each one and write workflows/<name>.jpg

Each graph is described below as nodes with their titles, widget values and links; the widget
lists, sockets and types come from the real node classes' INPUT_TYPES / RETURN_TYPES, so a change in
the node pack shows up here as a changed file (or an error naming the node and input) instead of a
workflow that silently stops matching. Layout: every node names its column (left to right = the
order of work); a group is placed as one block below what is already in the columns it spans, with
room for its title; groups never overlap each other or a node they do not hold (checked).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvae_art.nodes import NODE_CLASS_MAPPINGS
from cvae_art.runner import input_specs

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "workflows"

# LiteGraph's measures (frontend litegraph): the title bar is drawn above `pos`, each socket row
# is 20 px, each widget 20 px + 4 px spacing.
TITLE_H, SLOT_H, WIDGET_H, MULTILINE_H = 30, 20, 24, 80
NODE_W, COL_GAP, ROW_GAP = 340, 90, 40
GROUP_PAD, GROUP_TITLE_H = 12, 40
SEED_CONTROL = "fixed"  # shipped workflows give the same files on every run
OPTIONAL_SHAPE = 7  # how the frontend draws an optional socket (hollow dot)
COLORS = {"model": "#3f789e", "work": "#88a", "output": "#3f8a5a", "train": "#a1309b"}
# Nodes whose page code draws more than their widgets (width, extra height): web/cvae_explorer.js.
PAGE_DRAWN = {"CVAELatentExplorer": (400, 470)}


@dataclass(frozen=True)
class Out:
    node: "Node"
    slot: int

    @property
    def type(self) -> str:
        return self.node.cls.RETURN_TYPES[self.slot]


@dataclass
class Node:
    id: int
    type: str
    title: str
    col: int
    values: dict[str, Any]
    links: dict[str, Out]
    gap: int = 0  # extra space above the node
    text: str = ""  # a Note's text
    pos: tuple[float, float] = (0, 0)
    size: tuple[float, float] = (NODE_W, 60)

    @property
    def cls(self) -> type:
        return NODE_CLASS_MAPPINGS[self.type]

    def __getitem__(self, name: str) -> Out:
        names = getattr(self.cls, "RETURN_NAMES", None) or self.cls.RETURN_TYPES
        if name not in names:
            raise KeyError(f"{self.type} has no output {name!r} (outputs: {', '.join(names)})")
        return Out(self, list(names).index(name))


@dataclass
class Group:
    title: str
    nodes: list[Node]
    color: str


@dataclass
class Graph:
    name: str
    nodes: list[Node] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)

    def add(self, type: str, title: str, col: int, gap: int = 0, **inputs: Any) -> Node:
        """A node; inputs given an `Out` are links, the others widget values (unnamed ones keep
        the node's defaults)."""
        if type not in NODE_CLASS_MAPPINGS:
            raise KeyError(f"{self.name}: no node type {type!r} in the pack")
        specs = {s.name: s for s in input_specs(NODE_CLASS_MAPPINGS[type]) if s.category != "hidden"}
        for name in inputs:
            if name not in specs:
                raise KeyError(f"{self.name}: {type} has no input {name!r} (inputs: {', '.join(specs)})")
        links = {k: v for k, v in inputs.items() if isinstance(v, Out)}
        for name, out in links.items():
            if out.type != specs[name].type_name:
                raise TypeError(f"{self.name}: {type}.{name} takes {specs[name].type_name}, got {out.type} from {out.node.type}")
        values = {k: v for k, v in inputs.items() if not isinstance(v, Out)}
        for name, spec in specs.items():
            if spec.category == "required" and not spec.is_widget and name not in links:
                raise ValueError(f"{self.name}: {type} \"{title}\" needs a link into {name!r}")
            if name in values and not spec.is_widget:
                raise ValueError(f"{self.name}: {type}.{name} is a socket; link it instead of giving a value")
        node = Node(len(self.nodes) + 1, type, title, col, values, links, gap)
        self.nodes.append(node)
        return node

    def note(self, col: int, text: str, gap: int = 0) -> Node:
        node = Node(len(self.nodes) + 1, "Note", "Read me", col, {}, {}, gap, text=text.strip())
        self.nodes.append(node)
        return node

    def group(self, title: str, *nodes: Node, color: str = "work") -> None:
        self.groups.append(Group(title, list(nodes), COLORS[color]))

    # -- the UI document
    def _widgets(self, node: Node) -> list:
        values = []
        for spec in input_specs(node.cls):
            if not spec.is_widget:
                continue
            value = node.values.get(spec.name, spec.default())
            values.append(value)
            values += [SEED_CONTROL] * spec.extra_widget_values
        return values

    def _sockets(self, node: Node) -> list[tuple[str, str, bool]]:
        return [(s.name, s.type_name, s.category == "optional") for s in input_specs(node.cls)
                if s.category != "hidden" and not s.is_widget]

    def _measure(self, node: Node) -> None:
        if node.type == "Note":
            lines = sum(1 + len(line) // 48 for line in node.text.splitlines())
            node.size = (NODE_W, 30 + 17 * lines)
            return
        widgets = [s for s in input_specs(node.cls) if s.is_widget]
        rows = max(len(self._sockets(node)), len(node.cls.RETURN_TYPES), 1)
        height = rows * SLOT_H + 14
        for s in widgets:
            height += (MULTILINE_H if s.options.get("multiline") else WIDGET_H) * (1 + min(s.extra_widget_values, 1))
        width, extra = PAGE_DRAWN.get(node.type, (NODE_W, 0))
        node.size = (width, height + extra)

    def _layout(self) -> None:
        """Blocks (a group, or a node in no group) in the order of their first node; a block starts
        below everything already placed in the columns it spans, so groups never overlap."""
        group_of = {n.id: g for g in self.groups for n in g.nodes}
        for node in self.nodes:
            self._measure(node)
        blocks: list[list[Node]] = []
        placed: set[int] = set()
        for node in self.nodes:
            if node.id in placed:
                continue
            group = group_of.get(node.id)
            block = [n for n in self.nodes if group_of.get(n.id) is group] if group else [node]
            placed.update(n.id for n in block)
            blocks.append(block)
        columns = sorted({n.col for n in self.nodes})
        x_of = {col: i * (NODE_W + COL_GAP) for i, col in enumerate(columns)}
        cursor = {col: 0 for col in columns}
        for block in blocks:
            grouped = group_of.get(block[0].id) is not None
            spanned = [c for c in columns if min(n.col for n in block) <= c <= max(n.col for n in block)]
            start = max(cursor[c] for c in spanned) + (GROUP_TITLE_H + GROUP_PAD if grouped else 0)
            for col in spanned:
                y = start
                for node in (n for n in block if n.col == col):
                    y += node.gap
                    node.pos = (x_of[col], y + TITLE_H)
                    y += TITLE_H + node.size[1] + ROW_GAP
                cursor[col] = y + (GROUP_PAD if grouped else 0)

    def _bounding(self, group: Group) -> list[float]:
        left = min(n.pos[0] for n in group.nodes) - GROUP_PAD
        top = min(n.pos[1] - TITLE_H for n in group.nodes) - GROUP_PAD - GROUP_TITLE_H
        right = max(n.pos[0] + n.size[0] for n in group.nodes) + GROUP_PAD
        bottom = max(n.pos[1] + n.size[1] for n in group.nodes) + GROUP_PAD
        return [left, top, right - left, bottom - top]

    def _check_layout(self) -> None:
        def box(n: Node) -> list[float]:
            return [n.pos[0], n.pos[1] - TITLE_H, n.size[0], n.size[1] + TITLE_H]

        def overlap(a: list[float], b: list[float]) -> bool:
            return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]

        boxes = {g.title: self._bounding(g) for g in self.groups}
        titles = list(boxes)
        for i, a in enumerate(titles):
            for b in titles[i + 1:]:
                if overlap(boxes[a], boxes[b]):
                    raise ValueError(f"{self.name}: groups {a!r} and {b!r} overlap; move their nodes to other columns")
        for g in self.groups:
            for n in self.nodes:
                if n not in g.nodes and overlap(boxes[g.title], box(n)):
                    raise ValueError(f"{self.name}: node {n.title!r} lies inside group {g.title!r} but is not in it")

    def _order(self) -> dict[int, int]:
        """Execution order as the frontend stores it: a topological order of the nodes."""
        done: dict[int, int] = {}
        pending = list(self.nodes)
        while pending:
            for node in pending:
                if all(out.node.id in done for out in node.links.values()):
                    done[node.id] = len(done)
                    pending.remove(node)
                    break
        return done

    def to_ui(self) -> dict:
        self._layout()
        self._check_layout()
        order = self._order()
        links, out_links, link_of = [], {}, {}
        for node in self.nodes:
            sockets = self._sockets(node) if node.type != "Note" else []
            for name, out in node.links.items():
                slot = [s[0] for s in sockets].index(name)
                link_id = len(links) + 1
                links.append([link_id, out.node.id, out.slot, node.id, slot, out.type])
                link_of[(node.id, name)] = link_id
                out_links.setdefault((out.node.id, out.slot), []).append(link_id)
        nodes = []
        for node in self.nodes:
            entry: dict[str, Any] = {
                "id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
                "order": order[node.id], "mode": 0,
            }
            if node.type == "Note":
                entry.update(title=node.title, inputs=[], outputs=[], properties={"text": ""},
                             widgets_values=[node.text], color="#432", bgcolor="#653")
                nodes.append(entry)
                continue
            inputs = []
            for name, kind, optional in self._sockets(node):
                item = {"name": name, "type": kind, "link": link_of.get((node.id, name))}
                if optional:
                    item["shape"] = OPTIONAL_SHAPE
                inputs.append(item)
            names = getattr(node.cls, "RETURN_NAMES", None) or node.cls.RETURN_TYPES
            outputs = [{"name": name, "type": kind, "links": out_links.get((node.id, i), []), "slot_index": i}
                       for i, (name, kind) in enumerate(zip(names, node.cls.RETURN_TYPES))]
            entry.update(title=node.title, inputs=inputs, outputs=outputs,
                         properties={"Node name for S&R": node.type}, widgets_values=self._widgets(node))
            nodes.append(entry)
        groups = [{"id": i, "title": g.title, "bounding": self._bounding(g), "color": g.color, "font_size": 24, "flags": {}}
                  for i, g in enumerate(self.groups, 1)]
        width = max(n.pos[0] + n.size[0] for n in self.nodes)
        scale = round(min(1.0, 1500 / (width + 100)), 2)
        return {
            "last_node_id": len(self.nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": groups, "config": {},
            "extra": {"ds": {"scale": scale, "offset": [60, 80]}, "cvae_art": {"generated_by": "tools/make_workflows.py"}},
            "version": 0.4,
        }


def load_model(g: Graph, col: int = 0) -> Node:
    return g.add("CVAELoadModel", "Model: bundled 64 px emoji", col)


STYLES = ("noto", "openmoji", "emojitwo", "twemoji2015")


# -- the workflows -------------------------------------------------------------------------------

def latent_walk() -> Graph:
    g = Graph("latent_walk")
    g.note(0, """
A looping video that glides through random emoji.
CVAE Sample draws 5 keyframe latents from the model's learned prior (seed 154: of seeds 0-199,
one of the eight whose keyframes the bench's classifier recognised most surely, and the one that
looked best; temperature 0.85, where `cvae bench samples` scores samples best); CVAE Render Walk
slerps between them with ease-in-out, returns to the first (loop) and writes an MP4 upscaled to 256 px.
Try: another seed, temperature 0.6-1.2, more frames, or another style label.""")
    model = load_model(g)
    style = g.add("CVAECondition", "Style", 0, model=model["model"], factor="style", label="noto")
    keys = g.add("CVAESample", "Keyframes: 5 random emoji", 1, model=model["model"], count=5, seed=154, temperature=0.85,
                 cond=style["cond"])
    stills = g.add("CVAESaveImages", "Save keyframes", 2, images=keys["image"], filename_prefix="cvae/latent_walk_keys")
    render = g.add("CVAERenderWalk", "Render walk to MP4", 2, gap=20, model=model["model"], latents=keys["latent"],
                   frames=192, method="slerp", easing="ease-in-out", hold=0, loop=True, pingpong=False, format="mp4",
                   fps=24.0, quality=80, loop_count=0, size=256, filename_prefix="cvae/latent_walk", cond=style["cond"])
    g.group("1. Model and style", model, style, color="model")
    g.group("2. Keyframes", keys)
    g.group("3. Video", stills, render, color="output")
    return g


def style_morph() -> Graph:
    g = Graph("style_morph")
    g.note(0, """
One emoji (the tulip, samples/noto) morphing through the four styles, as a looping MP4.
Its single latent goes to CVAE Render Walk with a batch of four styles: the latent becomes one
keyframe per style, and the walk blends the styles from keyframe to keyframe and loops back.
'skip' in the loader picks another emoji.""")
    model = load_model(g)
    image = g.add("CVAELoadImageFolder", "Source emoji (noto tulip)", 0, folder="samples/noto", size=64, limit=1,
                  skip=2, every_nth=1, order="name", background="white")
    source_style = g.add("CVAECondition", "Its style: noto", 0, model=model["model"], factor="style", label="noto")
    latent = g.add("CVAEEncode", "Encode", 1, model=model["model"], image=image["image"], mode="mean", seed=0,
                   cond=source_style["cond"])
    styles = [g.add("CVAECondition", f"Style {i}: {s}", 2, model=model["model"], factor="style", label=s)
              for i, s in enumerate(STYLES, 1)]
    per_key = g.add("CVAEConditionBatch", "One style per keyframe", 3, cond_a=styles[0]["cond"], cond_b=styles[1]["cond"],
                    cond_c=styles[2]["cond"], cond_d=styles[3]["cond"])
    stills = g.add("CVAEDecode", "The four styles", 4, model=model["model"], latent=latent["latent"], cond=per_key["cond"])
    save = g.add("CVAESaveImages", "Save the four stills", 4, images=stills["image"], filename_prefix="cvae/style_morph_stills")
    render = g.add("CVAERenderWalk", "Render morph to MP4", 5, model=model["model"], latents=latent["latent"], frames=96,
                   method="slerp", easing="ease-in-out", hold=6, loop=True, pingpong=False, format="mp4", fps=24.0,
                   quality=80, loop_count=0, size=256, filename_prefix="cvae/style_morph", cond=per_key["cond"])
    g.group("1. Model and source image", model, image, source_style, color="model")
    g.group("2. Its latent", latent)
    g.group("3. Four styles", *styles, per_key)
    g.group("4. Output", stills, save, render, color="output")
    return g


def folder_style_blend() -> Graph:
    g = Graph("folder_style_blend")
    g.note(0, """
Redraws every bundled sample (samples/<style>/<emoji>.png, 40 files) in a blend of two styles,
into output/cvae/style_blend with the same sub-folders and file names. Each file's own style is
read from its sub-folder name. Point source_folder at your own folder to restyle it.""")
    model = load_model(g)
    blend = g.add("CVAEConditionBlendLabels", "Target style: 60% openmoji + 40% twemoji2015", 1, model=model["model"],
                  factor="style", label_1="openmoji", weight_1=0.6, label_2="twemoji2015", weight_2=0.4,
                  label_3="", weight_3=0.0, label_4="", weight_4=0.0)
    restyle = g.add("CVAERestyleFolder", "Restyle folder (names kept)", 2, model=model["model"],
                    source_folder="samples", target_folder="cvae/style_blend", target_cond=blend["cond"], mode="mean",
                    seed=0, size="source", batch_size=32, overwrite=True, background="white")
    g.group("1. Model", model, color="model")
    g.group("2. Style blend", blend)
    g.group("3. Restyle the folder", restyle, color="output")
    return g


def latent_arithmetic() -> Graph:
    g = Graph("latent_arithmetic")
    g.note(0, """
Style by arithmetic alone: encode without a style condition, so the style lives in the latent.
Analogy: ghost(openmoji) - ghost(noto) + every noto emoji = every emoji drawn openmoji-like.
Attribute vector: mean(openmoji) - mean(noto) added to every noto emoji, the same idea from all
ten pairs. Each result is saved as one grid (cvae/arithmetic/*_grid, in file-name order) and
one PNG per emoji with its file name (cvae/arithmetic/analogy, .../attribute).""")
    model = load_model(g)
    a = g.add("CVAELoadImageFolder", "A: ghost, openmoji", 0, folder="samples/openmoji", size=64, limit=1, skip=7,
              every_nth=1, order="name", background="white")
    b = g.add("CVAELoadImageFolder", "B: ghost, noto", 0, folder="samples/noto", size=64, limit=1, skip=7,
              every_nth=1, order="name", background="white")
    c = g.add("CVAELoadImageFolder", "C: all noto emoji", 0, folder="samples/noto", size=64, limit=0, skip=0,
              every_nth=1, order="name", background="white")
    d = g.add("CVAELoadImageFolder", "All openmoji emoji", 0, folder="samples/openmoji", size=64, limit=0, skip=0,
              every_nth=1, order="name", background="white")
    encoded = {}
    for key, loader in (("a", a), ("b", b), ("c", c), ("d", d)):
        encoded[key] = g.add("CVAEEncode", f"Encode {loader.title.split(':')[0]}" if key != "d" else "Encode openmoji",
                             1, model=model["model"], image=loader["image"], mode="mean", seed=0)
    analogy = g.add("CVAELatentAnalogy", "A - B + C", 2, a=encoded["a"]["latent"], b=encoded["b"]["latent"],
                    c=encoded["c"]["latent"])
    vector = g.add("CVAEAttributeVector", "openmoji - noto direction", 2, latents_with=encoded["d"]["latent"],
                   latents_without=encoded["c"]["latent"], strength=1.0)
    shifted = g.add("CVAELatentAdd", "C + direction", 2, a=encoded["c"]["latent"], b=vector["vector"])
    decoded_analogy = g.add("CVAEDecode", "Decode analogy", 3, model=model["model"], latent=analogy["latent"])
    decoded_vector = g.add("CVAEDecode", "Decode attribute shift", 3, model=model["model"], latent=shifted["latent"])
    save_analogy = g.add("CVAESaveImages", "Save analogy", 4, images=decoded_analogy["image"],
                         filename_prefix="cvae/arithmetic/analogy", file_names=c["file_names"])
    save_vector = g.add("CVAESaveImages", "Save attribute shift", 4, images=decoded_vector["image"],
                        filename_prefix="cvae/arithmetic/attribute", file_names=c["file_names"])
    grids = []
    for kind, decoded in (("analogy", decoded_analogy), ("attribute", decoded_vector)):
        sheet = g.add("CVAEImageGrid", f"Grid: {kind}", 4, images=decoded["image"], nrow=5, padding=2)
        grids.append(sheet)
        grids.append(g.add("CVAESaveImages", f"Save {kind} grid", 5, images=sheet["grid"],
                           filename_prefix=f"cvae/arithmetic/{kind}_grid"))
    g.group("1. Model and sample images", model, a, b, c, d, color="model")
    g.group("2. Encode (no style condition)", *encoded.values())
    g.group("3. Latent arithmetic", analogy, vector, shifted)
    g.group("4. Decode and save", decoded_analogy, decoded_vector, save_analogy, save_vector, *grids, color="output")
    return g


def sample_grid_per_style() -> Graph:
    g = Graph("sample_grid_per_style")
    g.note(0, """
The same 16 random latents drawn in each of the four styles, as one 4x4 grid per style
(output/cvae/grid/<style>_00001_.png): a tile shows the same latent in every grid, so flip
between them to compare styles. Change the seed for other emoji, temperature for more or less
typical ones.""")
    model = load_model(g)
    sample = g.add("CVAESample", "16 random latents", 1, model=model["model"], count=16, seed=2024, temperature=0.85)
    conds, decodes, grids, saves = [], [], [], []
    for style in STYLES:
        conds.append(g.add("CVAECondition", f"Style: {style}", 2, model=model["model"], factor="style", label=style))
        decodes.append(g.add("CVAEDecode", f"Draw in {style}", 3, model=model["model"], latent=sample["latent"],
                             cond=conds[-1]["cond"]))
        grids.append(g.add("CVAEImageGrid", f"Grid: {style}", 4, images=decodes[-1]["image"], nrow=4, padding=2))
        saves.append(g.add("CVAESaveImages", f"Save {style} grid", 5, images=grids[-1]["grid"],
                           filename_prefix=f"cvae/grid/{style}"))
    g.group("1. Model and latents", model, sample, color="model")
    g.group("2. Styles", *conds)
    g.group("3. Draw, lay out and save, one grid per style", *decodes, *grids, *saves, color="output")
    return g


def train_small_model() -> Graph:
    g = Graph("train_small_model")
    g.note(0, """
Trains a small 32 px model on the bundled samples (40 images; sub-folder names are the style
labels), saves it to models/cvae (with cvae run: models/cvae in the output folder), and draws 16 samples in each of two styles plus the loss
curve. 200 steps take about a minute on a CPU and give rough shapes: raise steps (a few thousand)
and use your own folder for a real model.""")
    train = g.add("CVAETrainModel", "Train 32 px model on samples", 1, folder="samples", factor="style", resolution="32",
                  steps=200, batch_size=32, learning_rate=2e-3, latent_dim=32, recon_loss="gaussian", beta=1.0,
                  ssim_weight=0.0, adversarial_weight=0.0, adversarial_start=2000, seed=0, run_name="cvae/train_small", kl_warmup=50,
                  labels="")
    save_model = g.add("CVAESaveModel", "Save model to models/cvae", 2, model=train["model"],
                       filename_prefix="small_emoji_32", half_precision=False)
    save_plot = g.add("CVAESaveImages", "Save loss plot", 2, images=train["loss_plot"],
                      filename_prefix="cvae/train_small_loss")
    results = []
    for row, style in enumerate(("noto", "openmoji")):
        cond = g.add("CVAECondition", f"Style: {style}", 3, model=train["model"], factor="style", label=style)
        sample = g.add("CVAESample", f"16 samples, {style}", 3, model=train["model"], count=16, seed=1,
                       temperature=0.9, cond=cond["cond"])
        save = g.add("CVAESaveImages", f"Save {style} samples", 4, gap=140 * row, images=sample["image"],
                     filename_prefix=f"cvae/train_small_{style}")
        results.append((cond, sample, save))
    g.group("1. Train", train, color="train")
    g.group("2. Save model and loss", save_model, save_plot, color="output")
    g.group("3. Sample from the new model", *(n for r in results for n in r[:2]))
    g.group("4. Save samples", *(r[2] for r in results), color="output")
    return g


def anomaly_scan() -> Graph:
    g = Graph("anomaly_scan")
    g.note(0, """
Scores every image of a folder by how badly the model explains it. The bundled anomaly_demo
folder holds the ten noto samples, one with a planted patch of noise (1F3A9_defect) and one
openmoji drawing filed under noto (1F47D_openmoji); scored as noto, so a drawing in another style
stands out too. Saves the score table
(output/cvae/anomaly/scores_NNNNN_.tsv: rank, file, recon error, negative ELBO; the node shows
it and names the rank-1 file), a heat map per image (same names, output/cvae/anomaly/heatmaps)
and the images ranked most unusual first (the first ranked_NNNNN_.png of a run is the oddest;
numbers go on across runs, as with Save Image).""")
    model = load_model(g)
    images = g.add("CVAELoadImageFolder", "Folder to scan", 0, folder="anomaly_demo", size=64, limit=0, skip=0,
                   every_nth=1, order="name", background="white")
    style = g.add("CVAECondition", "Expected style", 0, model=model["model"], factor="style", label="noto")
    score = g.add("CVAEAnomalyScore", "Anomaly score", 1, model=model["model"], image=images["image"], rank_by="neg_elbo",
                  samples=8, seed=0, overlay=0.7, filename_prefix="cvae/anomaly/scores", file_names=images["file_names"],
                  heat_scale="image", cond=style["cond"])
    heat = g.add("CVAESaveImages", "Save heat maps (names kept)", 2, images=score["heatmap"],
                 filename_prefix="cvae/anomaly/heatmaps", file_names=images["file_names"])
    ranked = g.add("CVAESaveImages", "Save ranked, most unusual first", 2, images=score["ranked"],
                   filename_prefix="cvae/anomaly/ranked")
    g.group("1. Model, folder and its style", model, images, style, color="model")
    g.group("2. Score", score)
    g.group("3. Save", heat, ranked, color="output")
    return g


def latent_explorer() -> Graph:
    g = Graph("latent_explorer")
    g.note(0, """
Move through the latent space by hand. CVAE Latent Explorer lays 12 prior samples (three per style)
out on a map: hover to see the drawing at any point, set the style sliders, click to pin a
keyframe, shift-click a pin to remove it. Four pins ship with it, one emoji per style, each pinned
with its own style; CVAE Render Walk glides through them in order and back (a looping MP4), the
style morphing from pin to pin. The pins are saved with the workflow, so `cvae run` renders the
same video without a browser.""")
    model = load_model(g)
    explorer = g.add("CVAELatentExplorer", "Latent explorer", 1, model=model["model"], count=EXPLORER_COUNT,
                     seed=EXPLORER_SEED, temperature=0.85, pins=shipped_pins())
    stills = g.add("CVAESaveImages", "Save the pinned keyframes", 2, images=explorer["image"],
                   filename_prefix="cvae/latent_explorer_keys")
    render = g.add("CVAERenderWalk", "Render walk through the pins", 2, gap=20, model=model["model"],
                   latents=explorer["keyframes"], frames=144, method="slerp", easing="ease-in-out", hold=6, loop=True,
                   pingpong=False, format="mp4", fps=24.0, quality=80, loop_count=0, size=256,
                   filename_prefix="cvae/latent_explorer", cond=explorer["cond"])
    g.group("1. Model", model, color="model")
    g.group("2. Explore and pin", explorer)
    g.group("3. Video", stills, render, color="output")
    return g


EXPLORER_COUNT, EXPLORER_SEED = 12, 2


def shipped_pins() -> str:
    """One pin per style, on the first prior sample of that style on the explorer's map of the
    bundled model (so they move with the model when it is retrained)."""
    import torch

    from cvae_art.nodes.comfy import BUNDLED_MODEL_FILE
    from cvae_art.vae_core.checkpoint import load_model as load
    from cvae_art.vae_core.explore import LatentMap, Pin, pins_json, prior_anchors

    model = load(BUNDLED_MODEL_FILE, "cpu")
    with torch.inference_mode():
        z, cond = prior_anchors(model, EXPLORER_COUNT, EXPLORER_SEED, 0.85)
    coords = LatentMap.fit(z).coords
    labels = model.vocab["style"]
    first = [int(cond["style"][:, i].argmax()) for i in range(len(labels))]  # anchors come grouped by style
    return pins_json([Pin(round(float(coords[i, 0]), 4), round(float(coords[i, 1]), 4), {"style": {label: 1.0}})
                      for i, label in zip(first, labels)])


GRAPHS = (latent_walk, style_morph, folder_style_blend, latent_arithmetic, sample_grid_per_style, train_small_model,
          anomaly_scan, latent_explorer)


def render(graph: Graph) -> str:
    return json.dumps(graph.to_ui(), indent=1) + "\n"


def thumbnail(name: str, tiles: int = 8, tile: int = 128) -> Path:
    """Runs the shipped workflow headless in a scratch folder and writes workflows/<name>.jpg (the
    template browser's thumbnail): frames spread over its video, else images spread over its PNGs."""
    import contextlib
    import io
    import tempfile

    import av
    import cv2
    import numpy as np
    import torch

    from cvae_art.cli import main as cvae
    from cvae_art.vae_core.images import grid, read_image, to_tensor

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"  # everything a run writes, CVAE Save Model's file included, goes here
        with contextlib.redirect_stdout(io.StringIO()):  # the list of files written
            code = cvae(["run", str(WORKFLOWS / f"{name}.json"), "--output-dir", str(out), "-q"])
        if code != 0:
            raise RuntimeError(f"{name}.json failed; run it with cvae run to see why")
        videos = sorted(out.rglob("*.mp4"))
        if videos:
            with av.open(str(videos[0])) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        else:
            frames = [read_image(p) for p in sorted(out.rglob("*.png"))]
            frames = [f for f in frames if f.shape[0] == f.shape[1]]  # not the loss plot
    picks = [frames[round(i * (len(frames) - 1) / max(tiles - 1, 1))] for i in range(min(tiles, len(frames)))]
    batch = torch.cat([to_tensor(cv2.resize(f, (tile, tile), interpolation=cv2.INTER_AREA)[None]) for f in picks])
    sheet = (grid(batch, nrow=4, padding=4).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path = WORKFLOWS / f"{name}.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report files that differ from what this script makes")
    parser.add_argument("--thumbnails", action="store_true",
                        help="also run each workflow and write its .jpg thumbnail (redo when the bundled model changes)")
    args = parser.parse_args(argv)
    stale = []
    for make in GRAPHS:
        graph = make()
        path = WORKFLOWS / f"{graph.name}.json"
        text = render(graph)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path.relative_to(REPO))
        if args.thumbnails:
            print(thumbnail(graph.name).relative_to(REPO))
    if stale:
        print(f"out of date (run python tools/make_workflows.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
