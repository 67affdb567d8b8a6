// Building the page without innerHTML: every value becomes a text node, so
// nothing the API returns can become markup.

/**
 * h('a', {href: '/ui/'}, 'text', child) makes an element. Attributes whose
 * value is null, undefined or false are left out; true sets an empty one;
 * "on*" keys add event listeners.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

/** s() is h() for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** replace(el, ...children) swaps el's content. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** announce(text) tells screen reader users about a change they did not make. */
export function announce(text) {
  const live = document.getElementById('announce');
  if (live) live.textContent = text;
}
