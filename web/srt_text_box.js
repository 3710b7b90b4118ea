/**
 * SR Transformers: the read-only text box both nodes show (Load SR Model's info, Compare's report).
 *
 * A multiline STRING widget that is not saved with the workflow, in a small monospace font, as
 * tall as its text (up to `maxLines`, then it scrolls; long lines scroll sideways instead of
 * widening the node). Setting the text grows the node taller when it must, never wider, so it
 * does not cover its neighbours. A helper module: it registers no extension.
 */
import { app } from "../../scripts/app.js";

const LINE_PX = 14;
const PAD_PX = 28; // the text box's padding and the widget's margins

/** Height of a box showing `text` (its lines, at least `minLines`, at most `maxLines`). */
function boxHeight(text, minLines, maxLines) {
  const lines = text ? String(text).split("\n").length : minLines;
  return Math.min(Math.max(lines, minLines), maxLines) * LINE_PX + PAD_PX;
}

/** The node's box `name`, made on first use; null if the host has no STRING widget. */
export async function textBox(node, name, { placeholder = "", minLines = 1, maxLines = 12 } = {}) {
  const find = () => node.widgets?.find((w) => w.name === name);
  if (find()) return find();
  const { ComfyWidgets } = await import("../../scripts/widgets.js");
  if (!ComfyWidgets?.STRING) return null;
  if (find()) return find(); // made meanwhile by another call
  const widget = ComfyWidgets.STRING(node, name, ["STRING", { multiline: true }], app).widget;
  widget.serialize = false;
  widget.options = { ...(widget.options ?? {}), serialize: false };
  widget.computeLayoutSize = () => {
    const height = boxHeight(widget.value, minLines, maxLines);
    return { minHeight: height, maxHeight: height, minWidth: 0 };
  };
  const el = widget.element;
  if (el) {
    el.readOnly = true;
    el.placeholder = placeholder;
    el.wrap = "off";
    Object.assign(el.style, {
      fontFamily: "monospace",
      fontSize: "11px",
      lineHeight: `${LINE_PX}px`,
      whiteSpace: "pre",
      overflow: "auto",
    });
  }
  return widget;
}

/** Show `text` in `widget` and make the node tall enough for it (never wider). */
export function setText(node, widget, text) {
  widget.value = text;
  if (widget.element) widget.element.value = text;
  const wanted = node.computeSize?.();
  if (wanted && node.size && wanted[1] > node.size[1]) node.setSize?.([node.size[0], wanted[1]]);
  node.setDirtyCanvas?.(true, true);
}
