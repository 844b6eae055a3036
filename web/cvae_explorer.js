// CVAE Latent Explorer: the map in the node. Hover decodes the point under the cursor (one
// request in flight, only the latest point queued), the style sliders re-decode it, a click pins
// it as a keyframe, a shift-click removes the pin under the cursor. Pins live in the node's
// `pins` widget, so they are saved with the workflow and run headless.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE = "CVAELatentExplorer";
const ROUTE = "/cvae/explorer";
const MAP_SIZE = 256; // CSS pixels of the map
const EXTENT = 1.25; // the map shows -EXTENT..EXTENT; the anchors span -1..1
const THUMB = 30;
const HEIGHT = 470;

function toMap(px) {
  return (px / MAP_SIZE) * 2 * EXTENT - EXTENT;
}
function toPx(v) {
  return ((v + EXTENT) / (2 * EXTENT)) * MAP_SIZE;
}

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function upstream(node, inputName) {
  const input = node.inputs?.find((i) => i.name === inputName);
  if (!input || input.link == null) return null;
  const graph = node.graph ?? app.graph;
  const link = graph.getLink?.(input.link) ?? graph.links?.[input.link];
  return link ? graph.getNodeById(link.origin_id) : null;
}

function readPins(node) {
  try {
    const pins = JSON.parse(widget(node, "pins")?.value || "[]");
    return Array.isArray(pins) ? pins : [];
  } catch {
    return [];
  }
}

function writePins(node, pins) {
  const w = widget(node, "pins");
  if (!w) return;
  w.value = JSON.stringify(pins);
  w.callback?.(w.value);
  node.setDirtyCanvas?.(true, true);
}

class Explorer {
  constructor(node) {
    this.node = node;
    this.map = null; // {key, coords, thumbs: [Image], factors}
    this.cursor = null;
    this.pending = null;
    this.busy = false;
    this.previewUrl = null;
    this.weights = {}; // factor -> {label: weight}
    this.build();
  }

  build() {
    const root = document.createElement("div");
    root.className = "cvae-explorer";
    root.style.cssText = "display:flex;flex-direction:column;gap:4px;font:11px sans-serif;color:#ddd;";
    const row = document.createElement("div");
    row.style.cssText = "display:flex;gap:6px;align-items:flex-start;";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "cvae-explorer-map";
    this.canvas.width = MAP_SIZE * devicePixelRatio;
    this.canvas.height = MAP_SIZE * devicePixelRatio;
    this.canvas.style.cssText = `width:${MAP_SIZE}px;height:${MAP_SIZE}px;background:#222;cursor:crosshair;border-radius:4px;`;
    const side = document.createElement("div");
    side.style.cssText = "display:flex;flex-direction:column;gap:4px;min-width:96px;";
    this.preview = document.createElement("img");
    this.preview.className = "cvae-explorer-preview";
    this.preview.style.cssText = "width:96px;height:96px;image-rendering:pixelated;background:#fff;border-radius:4px;";
    this.preview.alt = "";
    this.sliders = document.createElement("div");
    this.sliders.className = "cvae-explorer-sliders";
    side.append(this.preview, this.sliders);
    row.append(this.canvas, side);
    this.status = document.createElement("div");
    this.status.className = "cvae-explorer-status";
    this.status.style.cssText = "min-height:14px;color:#aaa;";
    root.append(row, this.status);
    this.root = root;

    this.canvas.addEventListener("pointermove", (e) => this.hover(e));
    this.canvas.addEventListener("pointerleave", () => {
      this.cursor = null;
      this.draw();
    });
    this.canvas.addEventListener("pointerdown", (e) => {
      e.stopPropagation(); // the graph canvas must not start a drag under the map
      this.click(e);
    });

    const w = this.node.addDOMWidget("explorer", "cvae_explorer", root, { hideOnZoom: false });
    w.serialize = false; // not an input: widgets_values stays as INPUT_TYPES lists them
    w.computeLayoutSize = () => ({ minHeight: HEIGHT, maxHeight: HEIGHT, minWidth: MAP_SIZE + 110 });
    w.computeSize = (width) => [width, HEIGHT];
    this.widget = w;
  }

  say(text) {
    this.status.textContent = text;
  }

  spec() {
    const latents = upstream(this.node, "latents");
    const source = upstream(this.node, "model");
    if (!latents && source?.comfyClass === "CVAELoadModel") {
      const num = (name) => Number(widget(this.node, name)?.value);
      return {
        model: widget(source, "model_name")?.value,
        count: num("count"),
        seed: num("seed"),
        temperature: num("temperature"),
      };
    }
    return { node: String(this.node.id) };
  }

  async refresh() {
    const spec = this.spec();
    this.mapSpec = JSON.stringify(spec);
    this.say("drawing the map…");
    let reply;
    try {
      reply = await api.fetchApi(`${ROUTE}/map`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(spec),
      });
    } catch (err) {
      this.map = null;
      this.say(`The map is unavailable: ${err}`);
      this.draw();
      return;
    }
    const body = await reply.json().catch(() => null);
    if (!reply.ok || !body) {
      this.map = null;
      this.say(
        body?.error
          ? `The map is unavailable: ${body.error}`
          : `The explorer's server route is missing (HTTP ${reply.status}): restart ComfyUI with the CVAE pack installed.`,
      );
      this.draw();
      return;
    }
    const thumbs = body.thumbs.map((src) => {
      const img = new Image();
      img.onload = () => this.draw();
      img.src = src;
      return img;
    });
    this.map = { ...body, thumbs };
    this.makeSliders(body.factors);
    this.say("hover to look, click to pin, shift-click a pin to remove it");
    this.draw();
    this.decode(this.cursor ?? { x: 0, y: 0 });
  }

  makeSliders(factors) {
    const pins = readPins(this.node);
    const last = pins.length ? pins[pins.length - 1].cond || {} : {};
    this.sliders.replaceChildren();
    this.weights = {};
    for (const [factor, labels] of Object.entries(factors)) {
      const start = last[factor] ?? { [labels[0]]: 1 };
      this.weights[factor] = {};
      for (const label of [...labels, "null"]) {
        const line = document.createElement("label");
        line.style.cssText = "display:flex;flex-direction:column;";
        const input = document.createElement("input");
        input.type = "range";
        input.min = "0";
        input.max = "1";
        input.step = "0.01";
        input.value = String(start[label] ?? 0);
        input.dataset.factor = factor;
        input.dataset.label = label;
        input.addEventListener("input", () => {
          this.weights[factor][label] = Number(input.value);
          this.decode(this.cursor ?? { x: 0, y: 0 });
        });
        this.weights[factor][label] = Number(input.value);
        line.append(document.createTextNode(label), input);
        this.sliders.append(line);
      }
    }
  }

  cond() {
    const out = {};
    for (const [factor, weights] of Object.entries(this.weights)) {
      const used = Object.fromEntries(Object.entries(weights).filter(([, w]) => w > 0));
      if (Object.keys(used).length) out[factor] = used;
    }
    return out;
  }

  point(e) {
    const r = this.canvas.getBoundingClientRect();
    const px = ((e.clientX - r.left) / r.width) * MAP_SIZE;
    const py = ((e.clientY - r.top) / r.height) * MAP_SIZE;
    return { x: toMap(px), y: toMap(py), px, py };
  }

  hover(e) {
    // Another model picked in Load Model (or a link changed): draw that model's map first.
    if (this.mapSpec !== undefined && JSON.stringify(this.spec()) !== this.mapSpec) {
      this.refresh();
      return;
    }
    this.cursor = this.point(e);
    this.draw();
    this.decode(this.cursor);
  }

  decode(pt) {
    if (!this.map) return;
    this.pending = pt;
    if (!this.busy) this.pump();
  }

  async pump() {
    this.busy = true;
    while (this.pending && this.map) {
      const pt = this.pending;
      this.pending = null; // a point the cursor left before its turn is never asked for
      try {
        const reply = await api.fetchApi(`${ROUTE}/decode`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ key: this.map.key, x: pt.x, y: pt.y, cond: this.cond() }),
        });
        if (reply.status === 404) {
          await this.refresh(); // the server forgot the map (restart, or too many maps)
          break;
        }
        if (!reply.ok) {
          const body = await reply.json().catch(() => ({}));
          this.say(body.error ?? `decode failed (HTTP ${reply.status})`);
          continue;
        }
        const url = URL.createObjectURL(await reply.blob());
        if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
        this.previewUrl = url;
        this.preview.src = url;
        this.preview.dataset.point = `${pt.x.toFixed(3)},${pt.y.toFixed(3)}`;
      } catch (err) {
        this.say(`decode failed: ${err}`);
      }
    }
    this.busy = false;
  }

  click(e) {
    if (!this.map) return;
    const pt = this.point(e);
    const pins = readPins(this.node);
    if (e.shiftKey) {
      const near = pins.findIndex((p) => Math.hypot(toPx(p.x) - pt.px, toPx(p.y) - pt.py) < 9);
      if (near >= 0) pins.splice(near, 1);
    } else {
      pins.push({ x: Number(pt.x.toFixed(4)), y: Number(pt.y.toFixed(4)), cond: this.cond() });
    }
    writePins(this.node, pins);
    this.say(`${pins.length} pinned keyframe(s)`);
    this.draw();
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(devicePixelRatio, 0, 0, devicePixelRatio, 0, 0);
    ctx.clearRect(0, 0, MAP_SIZE, MAP_SIZE);
    ctx.strokeStyle = "#3a3a3a";
    ctx.strokeRect(toPx(-1), toPx(-1), toPx(1) - toPx(-1), toPx(1) - toPx(-1));
    if (!this.map) return;
    this.map.coords.forEach(([x, y], i) => {
      const img = this.map.thumbs[i];
      if (img.complete) ctx.drawImage(img, toPx(x) - THUMB / 2, toPx(y) - THUMB / 2, THUMB, THUMB);
    });
    readPins(this.node).forEach((p, i) => {
      ctx.fillStyle = "#ff4081";
      ctx.beginPath();
      ctx.arc(toPx(p.x), toPx(p.y), 7, 0, 2 * Math.PI);
      ctx.fill();
      ctx.fillStyle = "#fff";
      ctx.font = "bold 9px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(String(i + 1), toPx(p.x), toPx(p.y));
    });
    if (this.cursor) {
      ctx.strokeStyle = "#fff";
      ctx.beginPath();
      ctx.arc(this.cursor.px, this.cursor.py, 5, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }
}

app.registerExtension({
  name: "cvae.latentExplorer",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE) return;
    const created = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = created?.apply(this, arguments);
      const explorer = new Explorer(this);
      this.cvaeExplorer = explorer;
      let timer = null;
      const later = () => {
        clearTimeout(timer);
        timer = setTimeout(() => explorer.refresh(), 200);
      };
      for (const name of ["count", "seed", "temperature"]) {
        const w = widget(this, name);
        if (!w) continue;
        const cb = w.callback;
        w.callback = function () {
          const r = cb?.apply(this, arguments);
          later();
          return r;
        };
      }
      const pins = widget(this, "pins");
      if (pins?.inputEl) pins.inputEl.rows = 2;
      const connections = this.onConnectionsChange;
      this.onConnectionsChange = function () {
        const r = connections?.apply(this, arguments);
        later();
        return r;
      };
      const configure = this.onConfigure;
      this.onConfigure = function () {
        const r = configure?.apply(this, arguments);
        later(); // a loaded workflow: its widgets and links are in place now
        return r;
      };
      this.setSize([Math.max(this.size[0], MAP_SIZE + 130), this.computeSize()[1]]);
      later();
      return result;
    };
    const executed = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const r = executed?.apply(this, arguments);
      if (message?.cvae_map && this.cvaeExplorer && !this.cvaeExplorer.map) this.cvaeExplorer.refresh();
      return r;
    };
  },
});
