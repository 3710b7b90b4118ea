/**
 * SR Transformers: show what "Load SR Model" loads, on the node.
 *
 * A read-only text box (not saved with the workflow) under the file list shows the model's
 * architecture, variant, scale, parameters, precisions, channels, inferred settings and file:
 *   - as soon as a file is picked, the node is added or a workflow is opened (or the page reloaded):
 *     the pack's route `GET /srt/model_info?name=<file>` describes the file without running anything;
 *   - after every run, from the node's ui `text` (ComfyUI only draws `text` for its own nodes).
 * The box is as tall as its text (up to MAX_LINES, then it scrolls); the node grows taller to fit
 * it and never wider, so it does not cover its neighbours. Only SRT_LoadModel nodes are touched
 * and nothing here throws into the page.
 */
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_CLASS = "SRT_LoadModel";
const INFO_WIDGET = "srt_model_info";
const MODEL_WIDGET = "model_name";
const LINE_PX = 14;
const PAD_PX = 28; // the text box's padding and the widget's margins
const MAX_LINES = 12;
const PLACEHOLDER = "Pick a checkpoint: its architecture, scale and precisions appear here.";

function warn(what, error) {
  console.warn(`[SR Transformers] ${what}`, error);
}

function lineCount(text) {
  return Math.max(1, String(text ?? "").split("\n").length);
}

/** Height of the box for `text`: every line, up to MAX_LINES. */
function boxHeight(text) {
  return Math.min(lineCount(text), MAX_LINES) * LINE_PX + PAD_PX;
}

async function ensureWidget(node) {
  let widget = node.widgets?.find((w) => w.name === INFO_WIDGET);
  if (widget) return widget;
  const { ComfyWidgets } = await import("../../scripts/widgets.js");
  if (!ComfyWidgets?.STRING) return null;
  widget = node.widgets?.find((w) => w.name === INFO_WIDGET); // created meanwhile by another call
  if (widget) return widget;
  widget = ComfyWidgets.STRING(node, INFO_WIDGET, ["STRING", { multiline: true }], app).widget;
  widget.serialize = false;
  widget.options = { ...(widget.options ?? {}), serialize: false };
  widget.computeLayoutSize = () => {
    const height = boxHeight(widget.value || PLACEHOLDER);
    return { minHeight: height, maxHeight: height, minWidth: 0 };
  };
  if (widget.element) {
    const el = widget.element;
    el.readOnly = true;
    el.placeholder = PLACEHOLDER;
    el.style.fontFamily = "monospace";
    el.style.fontSize = "11px";
    el.style.lineHeight = `${LINE_PX}px`;
    el.style.whiteSpace = "pre"; // long lines scroll inside the box instead of widening the node
    el.style.overflow = "auto";
    el.wrap = "off";
  }
  return widget;
}

/** Put `text` in the box and make the node tall enough for it (never wider). */
async function showInfo(node, text) {
  const widget = await ensureWidget(node);
  if (!widget) return;
  widget.value = text;
  if (widget.element) widget.element.value = text;
  const wanted = node.computeSize?.();
  if (wanted && node.size && wanted[1] > node.size[1]) node.setSize?.([node.size[0], wanted[1]]);
  node.setDirtyCanvas?.(true, true);
}

/** Ask the server to describe the selected file (no run needed), then show it. */
async function refresh(node) {
  const name = node.widgets?.find((w) => w.name === MODEL_WIDGET)?.value;
  if (!name) {
    await showInfo(node, "");
    return;
  }
  node.srtInfoFor = name;
  let text;
  try {
    const response = await api.fetchApi(`/srt/model_info?name=${encodeURIComponent(name)}`);
    const body = await response.json();
    text = body?.text ?? "";
  } catch (error) {
    warn("cannot ask for the model info; it appears after a run.", error);
    return;
  }
  if (node.srtInfoFor === name) await showInfo(node, text); // the user may have picked another file meanwhile
}

function watchModelWidget(node) {
  const widget = node.widgets?.find((w) => w.name === MODEL_WIDGET);
  if (!widget || widget.srtWatched) return;
  widget.srtWatched = true;
  const callback = widget.callback;
  widget.callback = function () {
    const result = callback?.apply(this, arguments);
    refresh(node).catch((error) => warn("cannot show the model info.", error));
    return result;
  };
}

function later(node, fn) {
  // after the workflow's values are applied (configure runs after creation)
  setTimeout(() => Promise.resolve().then(fn).catch((error) => warn("cannot show the model info.", error)), 0);
}

app.registerExtension({
  name: "SRTransformers.LoadModelInfo",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_CLASS) return;
    const proto = nodeType.prototype;
    const { onNodeCreated, onConfigure, onExecuted } = proto;

    proto.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      try {
        watchModelWidget(this);
        later(this, async () => {
          await ensureWidget(this);
          await refresh(this);
        });
      } catch (error) {
        warn("cannot add the model info box.", error);
      }
      return result;
    };

    proto.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      try {
        watchModelWidget(this);
        later(this, () => refresh(this));
      } catch (error) {
        warn("cannot show the model info.", error);
      }
      return result;
    };

    proto.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      const text = Array.isArray(output?.text) ? output.text.join("\n") : "";
      if (text) {
        this.srtInfoFor = this.widgets?.find((w) => w.name === MODEL_WIDGET)?.value;
        showInfo(this, text).catch((error) => warn("cannot show the model info.", error));
      }
      return result;
    };
  },
});
