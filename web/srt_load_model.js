/**
 * SR Transformers: show what "Load SR Model" loaded, on the node.
 *
 * The node (nodes/load_model.py) returns ui `text`: architecture, variant, scale, parameters,
 * precisions and inferred settings. ComfyUI only draws `text` for its own Preview Any node, so
 * this adds a read-only text box (not saved with the workflow) the first time the node runs.
 * Only SRT_LoadModel nodes are touched and nothing here throws into the page.
 */
import { app } from "../../scripts/app.js";

const NODE_CLASS = "SRT_LoadModel";
const INFO_WIDGET = "srt_model_info";

async function showInfo(node, text) {
  let widget = node.widgets?.find((w) => w.name === INFO_WIDGET);
  if (!widget) {
    const { ComfyWidgets } = await import("../../scripts/widgets.js");
    if (!ComfyWidgets?.STRING) return;
    widget = ComfyWidgets.STRING(node, INFO_WIDGET, ["STRING", { multiline: true }], app).widget;
    widget.serialize = false;
    widget.options = { ...(widget.options ?? {}), serialize: false };
    widget.computeLayoutSize = () => ({ minHeight: 84, maxHeight: 160, minWidth: 0 });
    if (widget.element) {
      widget.element.readOnly = true;
      widget.element.style.fontFamily = "monospace";
      widget.element.style.fontSize = "11px";
    }
  }
  widget.value = text;
  const size = node.computeSize?.() ?? node.size;
  node.setSize?.([Math.max(node.size[0], 340), Math.max(node.size[1], size[1])]);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "SRTransformers.LoadModelInfo",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_CLASS) return;
    const { onExecuted } = nodeType.prototype;
    nodeType.prototype.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      const text = Array.isArray(output?.text) ? output.text.join("\n") : "";
      if (text) {
        showInfo(this, text).catch((error) => console.warn("[SR Transformers] cannot show the model info.", error));
      }
      return result;
    };
  },
});
