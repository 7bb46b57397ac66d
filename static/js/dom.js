// Building page elements from data without innerHTML: text always goes in as text, so a
// station name or a note can never become markup.

const SVG = "http://www.w3.org/2000/svg";

function setAttributes(node, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
}

// element("span", { class: "line" }, item.line): strings and numbers become text nodes;
// null, undefined and false children are left out.
export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attributes);
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

// An SVG element; appended to `parent` when one is given.
export function svgElement(tag, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG, tag);
  setAttributes(node, attributes);
  if (parent) parent.append(node);
  return node;
}
