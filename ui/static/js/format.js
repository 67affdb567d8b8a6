// Formatting of times, durations and statuses.
import { h } from './dom.js';

export const STATUSES = ['PENDING', 'PROCESSING', 'COMPLETED', 'FAILED'];
export const TYPES = ['AI_PREVIEW', 'PARSE_DOCUMENT', 'GAP_DETECTION', 'RISK_ANALYSIS', 'REPORT_GENERATION'];

export function isTerminal(status) {
  return status === 'COMPLETED' || status === 'FAILED';
}

const timeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});

/** A <time> element in local time, with the exact UTC value as its datetime. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: iso }, timeFmt.format(new Date(iso)));
}

export function clock(date) {
  return date.toLocaleTimeString(undefined, { hour12: false });
}

/** duration(3.2) → "3.2 s"; 95 → "1 min 35 s"; 7300 → "2 h 1 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

export function between(startIso, endIso) {
  if (!startIso) return null;
  const end = endIso ? new Date(endIso) : new Date();
  return (end - new Date(startIso)) / 1000;
}

/** badge(status, big, text): a status pill; text, when given, is shown instead of status (whose colour it takes). */
export function badge(status, big, text) {
  return h('span', { class: `badge ${status}${big ? ' big' : ''}` }, text || status);
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

export function count(n) {
  return new Intl.NumberFormat().format(n);
}

/** An ISO timestamp with exactly three fractional digits, as the API wants. */
export function toApiTime(date) {
  return date.toISOString();
}
