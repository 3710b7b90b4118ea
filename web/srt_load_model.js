/**
 * SR Transformers: show what "Super Resolution Model Loader" loads, on the node.
 *
 * A read-only text box (not saved with the workflow) under the file list shows the model's
 * architecture, variant, scale, parameters, precisions, channels, inferred settings and file:
 *   - as soon as a file is picked, the node is added or a workflow is opened (or the page reloaded):
 *     the pack's route `GET /srt/model_info?name=<file>` describes the file without running anything;
 *   - after every run, from the node's ui `text` (ComfyUI only draws `text` for its own nodes).
 * The box (./srt_text_box.js) is as tall as its text; the node grows taller, never wider. Only
 * SRT_LoadModel nodes are touched and nothing here throws into the page.
 */
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { setText, textBox } from "./srt_text_box.js";

const NODE_CLASS = "SRT_LoadModel";
const INFO_WIDGET = "srt_model_info";
const MODEL_WIDGET = "model_name";
const PLACEHOLDER = "Pick a checkpoint: its architecture, scale and precisions appear here.";

function warn(what, error) {
  console.warn(`[SR Transformers] ${what}`, error);
}

function infoBox(node) {
  return textBox(node, INFO_WIDGET, { placeholder: PLACEHOLDER, minLines: 2, maxLines: 12 });
}

async function showInfo(node, text) {
  const widget = await infoBox(node);
  if (widget) setText(node, widget, text);
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

/** Refresh once after the workflow's values are applied (creation and configure both ask). */
function scheduleRefresh(node) {
  if (node.srtRefreshPending) return;
  node.srtRefreshPending = true;
  setTimeout(() => {
    node.srtRefreshPending = false;
    refresh(node).catch((error) => warn("cannot show the model info.", error));
  }, 0);
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
        scheduleRefresh(this);
      } catch (error) {
        warn("cannot add the model info box.", error);
      }
      return result;
    };

    proto.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      try {
        watchModelWidget(this);
        scheduleRefresh(this);
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
