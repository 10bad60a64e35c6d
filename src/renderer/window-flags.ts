/**
 * Per-window presentation flags the main process passes in the URL (the page has no other way
 * to know): `vibrancy=1` when the window has a macOS vibrancy material behind a transparent page.
 */
export function applyWindowFlags(): URLSearchParams {
  const q = new URLSearchParams(location.search);
  if (q.get('vibrancy') === '1') document.documentElement.classList.add('vibrant');
  if (q.get('platform')) document.documentElement.dataset.platform = q.get('platform')!;
  return q;
}
