/**
 * SR Transformers: the "Compare" node's before/after slider and metrics text.
 *
 * The node (nodes/compare.py) sends, after each run:
 *   a_images / b_images  A and B previews (same size)     -> the slider
 *   images               the same files                   -> ComfyUI's plain previews (fallback)
 *   text                 the PSNR/SSIM report              -> a read-only text box
 *   srt_summary          one line per measured pair        -> drawn above the slider
 *
 * The slider: hovering moves the split line; a click pins it where it is (hover no longer moves it,
 * dragging moves the pin), a second click releases it. When the pointer leaves the image the line
 * goes back to where it rests (the pin, else the middle) instead of staying at the edge it left by.
 * The labels on the image say which input each side is ("A · image_a"); lines under the metrics
 * say which node feeds each ("A = image_a ← Bicubic x4").
 * The report box is as tall as the report (then scrolls); the node grows taller to fit it after a
 * run and never wider.
 *
 * Safety rules: only SRT_Compare nodes are touched; every hook is wrapped so nothing throws into
 * the console; when the slider cannot draw (an error, or a renderer that never calls canvas
 * widgets) ComfyUI's own preview of `images` is left in place, so A and B are still visible.
 */
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { setText, textBox } from "./srt_text_box.js";

const NODE_CLASS = "SRT_Compare";
const SLIDER_WIDGET = "srt_compare_slider";
const REPORT_WIDGET = "srt_compare_report";
const CORE_PREVIEW_WIDGET = "$$canvas-image-preview";
const HEADER_LINE = 15;
const PAD = 6;
const REST_SPLIT = 0.5;

/** Run fn, never throw: a failure is reported once per node as a warning and marks the slider broken. */
function guarded(node, what, fn, fallback = undefined) {
  try {
    return fn();
  } catch (error) {
    const state = node?.srtCompare;
    if (state && !state.warned) {
      state.warned = true;
      console.warn(`[SRT Compare] ${what} failed; showing plain previews instead.`, error);
    }
    if (state) state.broken = true;
    node?.setDirtyCanvas?.(true, true); // redraw, so ComfyUI's plain preview takes over
    return fallback;
  }
}

function viewUrl(image) {
  const params = new URLSearchParams({
    filename: image.filename ?? "",
    subfolder: image.subfolder ?? "",
    type: image.type ?? "temp",
  });
  const rand = typeof app.getRandParam === "function" ? app.getRandParam() : `&rand=${Math.random()}`;
  return api.apiURL(`/view?${params}${rand}`);
}

function loadImage(node, url) {
  const img = new Image();
  img.onload = () => node.setDirtyCanvas?.(true, true);
  img.onerror = () => {
    img.srtFailed = true;
    node.setDirtyCanvas?.(true, true);
  };
  img.src = url;
  return img;
}

function newState() {
  return {
    frames: [],
    frame: 0,
    split: REST_SPLIT,
    rest: REST_SPLIT, // where the line goes when the pointer is not over the image
    pinned: false,
    summary: [],
    report: "",
    broken: false,
    warned: false,
    rect: null,
    badge: null,
  };
}

/** True when the slider has something to show and has not failed. */
function sliderActive(node) {
  const state = node.srtCompare;
  return !!state && !state.broken && state.frames.length > 0 && !!findWidget(node, SLIDER_WIDGET);
}

function findWidget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function removeCorePreview(node) {
  const index = node.widgets?.findIndex((w) => w.name === CORE_PREVIEW_WIDGET) ?? -1;
  if (index >= 0) {
    node.widgets[index].onRemove?.();
    node.widgets.splice(index, 1);
  }
}

/** Run a drawing step between save() and restore(), even when it throws: a leaked save() would
 * shift everything LiteGraph draws afterwards, on every frame. */
function withState(ctx, fn) {
  ctx.save();
  try {
    return fn();
  } finally {
    ctx.restore();
  }
}

/** Largest rectangle of the image's aspect ratio centred in the box. */
function fitRect(img, x, y, w, h) {
  const scale = Math.min(w / img.naturalWidth, h / img.naturalHeight);
  const dw = img.naturalWidth * scale;
  const dh = img.naturalHeight * scale;
  return { x: x + (w - dw) / 2, y: y + (h - dh) / 2, w: dw, h: dh, scale };
}

/** `text` shortened with an ellipsis to at most `maxWidth` pixels in the current font. */
function fitText(ctx, text, maxWidth) {
  if (ctx.measureText(text).width <= maxWidth) return text;
  let end = text.length;
  while (end > 1 && ctx.measureText(`${text.slice(0, end)}\u2026`).width > maxWidth) end--;
  return `${text.slice(0, end)}\u2026`;
}

/** Title of the node feeding input `inputName`, or null when nothing is linked. */
function sourceTitle(node, inputName) {
  const slot = node.inputs?.findIndex((input) => input.name === inputName) ?? -1;
  const source = slot >= 0 ? node.getInputNode?.(slot) : null;
  return source?.title || source?.type || null;
}

/** Lines under the metrics that say where A and B come from: "A = image_a ← <source node>". */
function legendLines(node) {
  const lines = [];
  for (const [letter, input] of [["A", "image_a"], ["B", "image_b"]]) {
    const title = sourceTitle(node, input);
    if (title) lines.push(`${letter} = ${input} \u2190 ${title}`);
  }
  return lines;
}

/** Text on a dark tag, anchored at x by its left edge, right edge or centre ("left"/"right"/"center"). */
function drawTag(ctx, text, x, y, anchor, maxWidth, { font = "12px sans-serif", height = 16, color = "#fff" } = {}) {
  ctx.font = font;
  text = fitText(ctx, text, Math.max(maxWidth - 8, 12));
  const width = ctx.measureText(text).width + 8;
  const left = anchor === "right" ? x - width : anchor === "center" ? x - width / 2 : x;
  ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
  ctx.fillRect(left, y, width, height);
  ctx.fillStyle = color;
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  ctx.fillText(text, left + 4, y + height / 2);
}

function drawMessage(ctx, text, width, y, height) {
  ctx.fillStyle = "#888";
  ctx.font = "12px sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, width / 2, y + height / 2);
}

/** The metrics lines, where A and B come from, and a frame badge (click to step through a batch). */
function drawHeader(ctx, state, lines, width, y) {
  ctx.font = "12px sans-serif";
  ctx.textBaseline = "top";
  ctx.textAlign = "left";
  lines.forEach((line, i) => {
    ctx.fillStyle = i < state.summary.length ? "#ddd" : "#aaa";
    ctx.fillText(fitText(ctx, line, width - 2 * PAD), PAD, y + i * HEADER_LINE);
  });
  state.badge = null;
  if (state.frames.length > 1) {
    const text = `frame ${state.frame + 1}/${state.frames.length} \u25B8`;
    const w = ctx.measureText(text).width + 10;
    const badge = { x: width - PAD - w, y, w, h: HEADER_LINE };
    ctx.fillStyle = "#333";
    ctx.fillRect(badge.x, badge.y, badge.w, badge.h);
    ctx.fillStyle = "#ddd";
    ctx.fillText(text, badge.x + 5, y + 1);
    state.badge = badge;
  }
}

/** A full, B over it right of the split line, "A · image_a" / "B · image_b" labels. */
function drawSlider(ctx, node, width, y, height) {
  const state = node.srtCompare;
  state.rect = null;
  if (!state.frames.length) {
    drawMessage(ctx, "Run the graph: A | B slider appears here", width, y, height);
    return;
  }
  const lines = [...state.summary, ...legendLines(node)];
  const headerHeight = Math.max(lines.length, state.frames.length > 1 ? 1 : 0) * HEADER_LINE + 4;
  drawHeader(ctx, state, lines, width, y);
  const { a, b } = state.frames[state.frame];
  const top = y + headerHeight;
  const boxHeight = height - headerHeight - 2;
  if (a.srtFailed || b.srtFailed) {
    drawMessage(ctx, "Preview images could not be loaded", width, top, boxHeight);
    return;
  }
  if (!a.naturalWidth || !b.naturalWidth || boxHeight < 8) {
    drawMessage(ctx, "Loading previews\u2026", width, top, Math.max(boxHeight, 16));
    return;
  }
  const rect = fitRect(a, PAD, top, width - 2 * PAD, boxHeight);
  state.rect = rect;
  const mouse = app.canvas?.graph_mouse;
  if (!state.pinned && mouse && !inside(rect, [mouse[0] - node.pos[0], mouse[1] - node.pos[1]])) {
    state.split = state.rest; // the pointer is elsewhere (even if the host sent no leave event)
  }
  const splitX = rect.x + rect.w * state.split;
  withState(ctx, () => {
    ctx.imageSmoothingEnabled = rect.scale < 1; // magnified pixels stay crisp for pixel-peeping
    ctx.drawImage(a, rect.x, rect.y, rect.w, rect.h);
    ctx.beginPath();
    ctx.rect(splitX, rect.y, rect.x + rect.w - splitX, rect.h);
    ctx.clip();
    ctx.drawImage(b, rect.x, rect.y, rect.w, rect.h);
  });
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(splitX, rect.y);
  ctx.lineTo(splitX, rect.y + rect.h);
  ctx.stroke();
  ctx.fillStyle = state.pinned ? "#4da3ff" : "#fff";
  ctx.beginPath();
  ctx.arc(splitX, rect.y + rect.h / 2, state.pinned ? 6 : 5, 0, 2 * Math.PI);
  ctx.fill();
  const half = rect.w / 2 - 6;
  drawTag(ctx, "A \u00B7 image_a", rect.x + 4, rect.y + 4, "left", half);
  drawTag(ctx, "B \u00B7 image_b", rect.x + rect.w - 4, rect.y + 4, "right", half);
  if (rect.h >= 60 && rect.w >= 120) {
    const hint = state.pinned ? "pinned \u00B7 click to release" : "hover to compare \u00B7 click to pin";
    const small = { font: "11px sans-serif", height: 15, color: "#ddd" };
    drawTag(ctx, hint, rect.x + rect.w / 2, rect.y + rect.h - 18, "center", rect.w - 4, small);
  }
}

function inside(box, pos) {
  return !!box && pos[0] >= box.x && pos[0] <= box.x + box.w && pos[1] >= box.y && pos[1] <= box.y + box.h;
}

function setSplit(node, value) {
  const state = node.srtCompare;
  if (Math.abs(state.split - value) < 1e-4) return;
  state.split = value;
  node.imageIndex = state.split >= 0.5 ? 0 : 1; // context menu: the image filling more of the view
  node.setDirtyCanvas?.(true, false);
}

function splitAt(state, pos) {
  return Math.min(1, Math.max(0, (pos[0] - state.rect.x) / state.rect.w));
}

/** Hover (no button): the line follows the pointer over the image unless pinned, and goes back
 * to its resting place when the pointer is elsewhere on the node. */
function hover(node, pos) {
  const state = node.srtCompare;
  if (!state || state.pinned) return false;
  setSplit(node, inside(state.rect, pos) ? splitAt(state, pos) : state.rest);
  return inside(state.rect, pos);
}

/** The pointer left the node: back to the resting place. */
function leave(node) {
  const state = node.srtCompare;
  if (state && !state.pinned) setSplit(node, state.rest);
}

/** A click on the image pins the line there; a click while pinned releases it (hover again). */
function togglePin(node, pos) {
  const state = node.srtCompare;
  if (!state || !inside(state.rect, pos)) return false;
  if (state.pinned) {
    state.pinned = false;
    state.rest = REST_SPLIT;
    setSplit(node, splitAt(state, pos));
  } else {
    state.pinned = true;
    state.rest = splitAt(state, pos);
    setSplit(node, state.rest);
  }
  node.setDirtyCanvas?.(true, false);
  return true;
}

/** Dragging with the button held moves the pin. */
function dragPin(node, pos) {
  const state = node.srtCompare;
  if (!state?.pinned || !state.rect) return false;
  state.rest = splitAt(state, pos);
  setSplit(node, state.rest);
  return true;
}

function makeSliderWidget(node) {
  return {
    name: SLIDER_WIDGET,
    type: "custom",
    value: "",
    serialize: false,
    options: { serialize: false },
    computeLayoutSize() {
      const state = node.srtCompare;
      if (!state || state.broken) return { minHeight: 0, maxHeight: 0, minWidth: 0 };
      if (!state.frames.length) return { minHeight: 24, maxHeight: 200, minWidth: 64 };
      return { minHeight: 220, minWidth: 64 };
    },
    draw(ctx, drawNode, width, y) {
      if (drawNode.srtCompare?.broken) return;
      const height = this.computedHeight ?? Math.max(drawNode.size[1] - y - 4, 24);
      guarded(drawNode, "drawing the slider", () => withState(ctx, () => drawSlider(ctx, drawNode, width, y, height)));
    },
    mouse(event, pos, mouseNode) {
      return guarded(mouseNode, "handling the pointer", () => {
        const state = mouseNode.srtCompare;
        const type = String(event?.type ?? "");
        if (!state) return false;
        if (type.endsWith("move")) return (event.buttons ?? 0) & 1 ? dragPin(mouseNode, pos) : false;
        if (!type.endsWith("down")) return false;
        if (inside(state.badge, pos)) {
          state.frame = (state.frame + 1) % state.frames.length;
          mouseNode.imgs = [state.frames[state.frame].a, state.frames[state.frame].b];
          mouseNode.setDirtyCanvas?.(true, false);
          return true;
        }
        return togglePin(mouseNode, pos);
      }, false);
    },
  };
}

async function addReportWidget(node) {
  const widget = await textBox(node, REPORT_WIDGET, {
    placeholder: "PSNR / SSIM report appears here after a run",
    minLines: 2,
    maxLines: 16,
  });
  if (widget && node.srtCompare?.report) setText(node, widget, node.srtCompare.report);
}

function onCreated(node) {
  node.srtCompare = newState();
  node.addCustomWidget(makeSliderWidget(node));
  addReportWidget(node).catch((error) => {
    console.warn("[SRT Compare] no report text box (the metrics stay on the slider).", error);
  });
}

function onOutput(node, output) {
  const state = node.srtCompare;
  if (!state || !output) return;
  const aList = output.a_images ?? [];
  const bList = output.b_images ?? [];
  const count = Math.min(aList.length, bList.length);
  state.frames = Array.from({ length: count }, (_, i) => ({
    a: loadImage(node, viewUrl(aList[i])),
    b: loadImage(node, viewUrl(bList[i])),
  }));
  state.frame = Math.min(state.frame, Math.max(count - 1, 0));
  state.summary = Array.isArray(output.srt_summary) ? output.srt_summary.map(String) : [];
  state.broken = false;
  state.report = Array.isArray(output.text) ? output.text.join("\n") : "";
  const report = findWidget(node, REPORT_WIDGET);
  if (report) setText(node, report, state.report);
  if (count) {
    node.imgs = [state.frames[state.frame].a, state.frames[state.frame].b];
    node.imageIndex = 0;
    removeCorePreview(node);
  }
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "SRTransformers.Compare",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_CLASS) return;
    const proto = nodeType.prototype;
    const { onNodeCreated, onExecuted, onDrawBackground, onMouseMove, onMouseLeave } = proto;

    proto.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      guarded(this, "creating the slider", () => onCreated(this));
      return result;
    };

    proto.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      guarded(this, "reading the results", () => onOutput(this, output));
      return result;
    };

    // While the slider can draw it replaces ComfyUI's image preview; otherwise the preview stays.
    proto.onDrawBackground = function () {
      const active = guarded(this, "checking the slider", () => sliderActive(this), false);
      if (active) {
        guarded(this, "hiding the plain preview", () => removeCorePreview(this));
        return;
      }
      return onDrawBackground?.apply(this, arguments);
    };

    proto.onMouseMove = function (event, pos) {
      const result = onMouseMove?.apply(this, arguments);
      if (sliderActive(this)) guarded(this, "moving the slider", () => hover(this, pos));
      return result;
    };

    proto.onMouseLeave = function () {
      const result = onMouseLeave?.apply(this, arguments);
      if (sliderActive(this)) guarded(this, "moving the slider", () => leave(this));
      return result;
    };
  },
});
