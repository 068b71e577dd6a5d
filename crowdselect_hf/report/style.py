"""The report's look: its colours (shared by the figures and the page) and its style sheet."""

POOL_COLOR = "#9AA5B1"
SELECTED_COLOR = "#D9480F"
INK = "#1F2933"
MUTED = "#616E7C"
GRID = "#E4E7EB"
UNCLUSTERED_COLOR = "#C3CAD2"
CLUSTER_COLORS = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D", "#FF9DA6", "#7869E1",
    "#B40078", "#FF96FF", "#87780F", "#00694B", "#C3C387", "#00E1A5", "#00C3FF", "#B4B4FF", "#FFB478", "#964B0F",
    "#962D4B", "#0096FF", "#783C87", "#A5D24B", "#FF69A5", "#4B5A1E", "#1E5AB4", "#87D296", "#D2962D", "#C3004B",
)
"""30 qualitative colours: Vega's first nine, then each next one the farthest (CIELAB ΔE76) from
those before it and from the report's greys and accent, among colours of moderate lightness and
chroma. Any two are at least ΔE76 23 apart; beyond 30 clusters colours repeat."""


def cluster_color(c: int) -> str:
    """The colour of cluster ``c`` (``-1``: not clustered)."""
    return CLUSTER_COLORS[c % len(CLUSTER_COLORS)] if c >= 0 else UNCLUSTERED_COLOR


CSS = """
:root { --ink:#1F2933; --muted:#616E7C; --line:#E4E7EB; --bg:#F5F7FA; --accent:#D9480F; --pool:#9AA5B1; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", "Helvetica Neue", "DejaVu Sans", Arial, sans-serif; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 28px; }
header { background: linear-gradient(120deg, #1F2933 0%, #323F4B 100%); color:#fff; padding: 30px 0 24px; }
header h1 { margin: 0 0 4px; font-size: 28px; font-weight: 700; letter-spacing: -0.01em; }
header .sub { margin: 0 0 18px; color: #CBD2D9; }
.chips { display:flex; flex-wrap:wrap; gap:8px; }
.chip { background: rgba(255,255,255,0.09); border:1px solid rgba(255,255,255,0.18); border-radius: 999px;
  padding: 4px 12px; font-size: 13.5px; white-space: nowrap; }
.chip .k { color:#F9A66C; margin-right:6px; font-weight:600; }
nav { background:#fff; border-bottom:1px solid var(--line); position: sticky; top: 0; }
nav .wrap { display:flex; flex-wrap: wrap; gap: 18px; padding-top: 10px; padding-bottom: 10px; }
nav a { color: var(--muted); text-decoration:none; font-size: 14px; font-weight: 600; }
nav a:hover { color: var(--accent); }
.stats { display:grid; grid-template-columns: repeat(6, 1fr); gap: 14px; margin: 24px 0 8px; }
.stat { background:#fff; border:1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.stat .v { font-size: 24px; font-weight: 700; }
.stat .l { color: var(--muted); font-size: 13px; }
.card { background:#fff; border:1px solid var(--line); border-radius: 12px; padding: 22px 26px; margin: 18px 0;
  box-shadow: 0 1px 2px rgba(31,41,51,0.04); }
.card h2 { margin: 0 0 10px; font-size: 19px; }
.card p { margin: 6px 0 12px; color: var(--muted); }
img.plot { display:block; width:100%; height:auto; margin: 12px 0 6px; }
.note { background:#FFF8E6; border-left: 4px solid #F0B429; padding: 10px 14px; color:#8D5B00 !important; border-radius: 4px; }
.two { display:grid; grid-template-columns: 1fr 1fr; gap: 26px; align-items:start; }
ul.notes { margin: 4px 0; padding-left: 18px; color: var(--muted); font-size: 14px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
table.grid th, table.grid td { padding: 7px 10px; border-bottom: 1px solid var(--line); text-align:left; }
table.grid th { color: var(--muted); font-weight: 600; font-size: 13px; text-transform: uppercase; letter-spacing: .03em; }
table.grid td.num, table.grid th:not(:first-child) { text-align:right; font-variant-numeric: tabular-nums; }
table.grid tr.short td { background: #FFF3EC; }
table.grid tfoot td { font-weight: 700; border-top: 2px solid var(--line); }
table.grid tr.muted td { color: var(--muted); font-weight: 400; }
table.small { font-size: 13.5px; }
table.kv td { padding: 4px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.kv td:first-child { color: var(--muted); white-space: nowrap; }
table.kv th { text-align:left; padding: 4px 10px; font-size: 13px; text-transform: uppercase; color: var(--muted); }
.swatch { display:inline-block; width: 11px; height: 11px; border-radius: 3px; margin-right: 7px; vertical-align: -1px; }
.samples { display:grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.sample { border:1px solid var(--line); border-radius: 10px; padding: 12px 14px; background:#FBFCFD; }
.sample .meta { font-size: 12.5px; color: var(--muted); margin-bottom: 8px; }
.turn { font-size: 14px; white-space: pre-wrap; word-wrap: break-word; overflow-wrap: anywhere; margin: 6px 0; }
.turn .role { display:block; font-size: 11.5px; font-weight: 700; text-transform: uppercase; letter-spacing: .05em;
  color: var(--muted); margin-bottom: 2px; white-space: normal; }
.turn.assistant { border-left: 3px solid var(--accent); padding-left: 10px; }
.turn.user { border-left: 3px solid var(--pool); padding-left: 10px; }
.muted { color: var(--muted); }
table.grid td.terms, .terms { color: var(--muted); font-size: 13px; }
table.grid td.terms, table.quotas th:nth-last-child(-n+2) { text-align: left; }
table.rejected tr.group td { background: var(--bg); font-weight: 600; color: var(--ink); padding-top: 10px; }
table.rejected tr.lowest-selected td { color: var(--accent); }
table.rejected td.instr { min-width: 260px; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 13px; }
.card { overflow-x: auto; }
table.rejected td, table.rejected th { padding: 6px 7px; }
ul.reasons { columns: 2; column-gap: 28px; margin-bottom: 12px; }
table.rejected td, table.rejected th { vertical-align: top; }
table.rejected th:nth-last-child(-n+2) { text-align: left; }
table.rejected td.why { min-width: 120px; }
.verdict { background:#FFF3EC; border-left: 4px solid var(--accent); padding: 10px 14px; color: var(--ink) !important;
  border-radius: 4px; font-weight: 600; }
.mapbox { position: relative; }
#map-img { cursor: crosshair; }
.tip { display:none; position:absolute; z-index: 10; max-width: 460px; background: #1F2933; color:#fff; font-size: 12.5px;
  line-height: 1.4; padding: 8px 10px; border-radius: 6px; white-space: pre-wrap; pointer-events: none;
  box-shadow: 0 4px 14px rgba(31,41,51,0.25); }
footer { color: var(--muted); font-size: 13px; padding: 10px 28px 40px; }
@media (max-width: 900px) { .stats { grid-template-columns: repeat(3, 1fr); } .two, .samples { grid-template-columns: 1fr; } }
"""
