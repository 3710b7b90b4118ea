/**
 * SR Transformers: the read-only text box both nodes show (Super Resolution Model Loader's info, Compare's report).
 *
 * A DOM widget of our own (`node.addDOMWidget`, the front end's public node API; no internal
 * module is imported): a read-only textarea that is not saved with the workflow, in a small
 * monospace font. Long lines wrap at the node's width (nothing is cut or scrolls sideways); the
 * box is as tall as its wrapped text (up to `maxLines`, then it scrolls). Setting the text grows
 * the node taller when it must, never wider, so it does not cover its neighbours. A helper
 * module: it registers no extension.
 */

const LINE_PX = 14;
const FONT = "11px monospace";
const PAD_PX = 28; // the text box's padding and the widget's margins, vertically
const SIDE_PX = 30; // the widget's margins, the box's padding and its scroll bar, horizontally

let measure = null;

/** Width of one character of the box's font (a monospace font: every character alike). */
function charWidth() {
  if (!measure) measure = document.createElement("canvas").getContext("2d");
  if (!measure) return 7;
  measure.font = FONT;
  return measure.measureText("0123456789").width / 10 || 7;
}

/** Lines `text` takes in a box `width` px wide: its own lines, each wrapped at the width. */
export function wrappedLines(text, width) {
  if (!text) return 0;
  const perLine = Math.max(8, Math.floor((width - SIDE_PX) / charWidth()));
  return String(text)
    .split("\n")
    .reduce((sum, line) => sum + Math.max(1, Math.ceil(line.length / perLine)), 0);
}

/** Height of a box showing `text` in a node `width` px wide (at least `minLines`, at most `maxLines`). */
function boxHeight(text, width, minLines, maxLines) {
  const lines = text ? wrappedLines(text, width) : minLines;
  return Math.min(Math.max(lines, minLines), maxLines) * LINE_PX + PAD_PX;
}

/** The node's box `name`, made on first use; null if the front end cannot add DOM widgets. */
export function textBox(node, name, { placeholder = "", minLines = 1, maxLines = 12 } = {}) {
  const found = node.widgets?.find((w) => w.name === name);
  if (found) return found;
  if (typeof node.addDOMWidget !== "function") return null;
  const el = document.createElement("textarea");
  el.readOnly = true;
  el.placeholder = placeholder;
  el.spellcheck = false;
  el.className = "comfy-multiline-input srt-text-box";
  Object.assign(el.style, {
    fontFamily: "monospace",
    fontSize: "11px",
    lineHeight: `${LINE_PX}px`,
    whiteSpace: "pre-wrap",
    overflowWrap: "anywhere",
    overflowX: "hidden",
    overflowY: "auto",
    resize: "none",
    boxSizing: "border-box",
  });
  const height = () => boxHeight(el.value, node.size?.[0] ?? 320, minLines, maxLines);
  const widget = node.addDOMWidget(name, "srt_text", el, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => el.value,
    setValue: (value) => {
      el.value = value ?? "";
    },
    getMinHeight: height,
    getMaxHeight: height,
  });
  widget.serialize = false;
  // newer front ends lay DOM widgets out with computeLayoutSize; older ones ask getMinHeight
  widget.computeLayoutSize = () => ({ minHeight: height(), maxHeight: height(), minWidth: 0 });
  growToFit(node);
  return widget;
}

/** Make the node tall enough for its widgets (never wider, never shorter). */
function growToFit(node) {
  const wanted = node.computeSize?.();
  if (wanted && node.size && wanted[1] > node.size[1]) node.setSize?.([node.size[0], wanted[1]]);
  node.setDirtyCanvas?.(true, true);
}

/** Show `text` in `widget` and make the node tall enough for it (never wider). */
export function setText(node, widget, text) {
  widget.value = text;
  if (widget.element) widget.element.value = text;
  growToFit(node);
}
