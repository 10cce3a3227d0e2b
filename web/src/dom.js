// Building the page's DOM. Every string goes into a text node (or an attribute value): nothing
// that comes from a device, a payload or the API is ever parsed as HTML: this app never assigns
// markup to an element (tests/dashboard/test_dashboard_build.py checks the sources and the bundle).

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  return append(node, children);
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Sets a node's text only when it changed (a live page rewrites nothing that stayed the same).
export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

// A link to another view of the page: the route is in the fragment; the name is encoded, so no
// device name can make it anything but a fragment.
export function routeHref(...parts) {
  return "#/" + parts.map(encodeURIComponent).join("/");
}
