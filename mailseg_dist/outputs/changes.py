"""What changed since the parent version's month: the drift report's figures, report section and sheet.

`changes` is `model.drift.drift_block(...)` plus ``months``: every stored month of the
lineage, oldest first, as ``{"month", "version", "shares": {cluster: share}, "names":
{cluster: name}}``. From it:

- `change_figures`: PSI per feature against the bands, the transition matrix (row shares
  and counts) and each segment's share over the stored months;
- `changes_section`: the report's "Qué cambió" / "What changed" section: the verdict in
  one sentence with the numbers that decided it, then the tables and figures;
- `add_changes_sheet`: sheet Cambios / Changes of the workbook (export.write_results_xlsx), the same
  tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rustpy_xlsxwriter import Format

from mailseg_dist.core.catalog import FIGURE_FILES, FIGURES_SUBDIR
from mailseg_dist.core.storage import as_location
from mailseg_dist.outputs.figures import _colour, _save, _wrap
from mailseg_dist.outputs.report import _e, _img, _num, _pct, _table
from mailseg_dist.segments.texts import check_lang

BAND_COLOURS = {"stable": "#2e7d32", "watch": "#ef8f00", "act": "#c62828"}
# The section's own look: the verdict card and feature rows in their band's colour.
CSS = ("".join(f".card.verdict.{b}{{border-left-color:{c}}}" for b, c in BAND_COLOURS.items())
       + "tr.band-watch td{background:#fff4e0}tr.band-act td{background:#fdecea}")
CHANGE_FIGURES = ("drift_psi", "transitions", "share_history")
FEATURE_LABELS = {
    "es": {"send": "Envíos", "bounce": "Rebotes", "open": "Aperturas", "click": "Clics", "Total": "Total",
           "Comprador": "Compra", "hour": "Hora", "day_of_week": "Día de la semana",
           "engagement_score": "Compromiso"},
    "en": {"send": "Sends", "bounce": "Bounces", "open": "Opens", "click": "Clicks", "Total": "Total",
           "Comprador": "Buyer", "hour": "Hour", "day_of_week": "Weekday", "engagement_score": "Engagement"},
}
C = {
    "es": {"title": "Qué cambió", "since": "Qué cambió desde {then}", "sheet": "Cambios",
           "band": {"stable": "estable", "watch": "vigilar", "act": "actuar"},
           "shares": "el reparto de usuarios entre segmentos",
           "stable": "Estable: todos los PSI por debajo de {watch}; el más alto, {items}. Los segmentos siguen "
                     "describiendo a la población.",
           "watch": "A vigilar: PSI entre {watch} y {act} en {items}. Los segmentos siguen siendo válidos; "
                    "conviene revisar estas cifras el próximo mes.",
           "act": "Actuar: PSI por encima de {act} en {items}. La población ya no es la que definió los "
                  "segmentos: se recomienda un reajuste completo con «mailseg run».",
           "both": "Actuar: PSI entre {watch} y {act} a la vez en {features} y en el reparto de usuarios entre "
                   "segmentos ({shares}): el cambio de la población ya se ve en los segmentos. Se recomienda un "
                   "reajuste completo con «mailseg run».",
           "and": " y ",
           "moves": "De los {common} usuarios presentes en ambos meses, {stayers} ({p_stay}) siguen en su "
                    "segmento y {movers} ({p_move}) cambiaron; {new} usuarios son nuevos y {gone} ya no están.",
           "features": "Variables: estabilidad de la población (PSI)",
           "psi_note": "PSI = Σ (p_ahora − p_antes)·ln(p_ahora/p_antes) sobre los {bins} intervalos de cuantiles "
                       "del mes anterior: < {watch} estable, {watch}–{act} vigilar, > {act} actuar. El "
                       "desplazamiento de la media y la dispersión se miden en desviaciones típicas del mes anterior.",
           "f_cols": ["Variable", "PSI", "Lectura", "Media antes", "Media ahora", "Desplazamiento (σ)",
                      "Dispersión ahora/antes"],
           "segments": "Segmentos: antes y ahora", "share_psi": "PSI del reparto entre segmentos: {psi} ({band}).",
           "s_cols": ["Id", "Nombre antes", "Nombre ahora", "Proporción antes", "Proporción ahora", "Cambio (pp)",
                      "Aporte al PSI", "Desplazamiento del centro", "Silueta antes", "Silueta ahora"],
           "moves_title": "Movimientos entre segmentos", "from_to": "antes ↓ / ahora →", "gone": "ya no están",
           "new": "nuevos", "moves_note": "Cada celda: usuarios y, entre paréntesis, su parte de la fila (usuarios "
                                          "del segmento anterior presentes ahora).",
           "history": "Proporción de cada segmento por mes", "month": "Mes", "version": "Versión",
           "fig_psi": "Estabilidad de cada variable (PSI) entre {then} y {now}", "psi_axis": "PSI",
           "fig_moves": "De qué segmento a cuál: parte de cada fila ({then} → {now})",
           "fig_moves_sub": "{common:,} usuarios en ambos meses · {p_stay} siguen en su segmento · "
                            "{new:,} nuevos · {gone:,} ya no están",
           "before": "antes ({then})", "now": "ahora ({now})", "fig_history": "Proporción de usuarios de cada "
                                                                               "segmento por mes",
           "share_axis": "usuarios (proporción)"},
    "en": {"title": "What changed", "since": "What changed since {then}", "sheet": "Changes",
           "band": {"stable": "stable", "watch": "watch", "act": "act"},
           "shares": "the split of users across segments",
           "stable": "Stable: every PSI below {watch}; the largest, {items}. The segments still describe the "
                     "population.",
           "watch": "Watch: PSI between {watch} and {act} for {items}. The segments still hold; look at these "
                    "numbers again next month.",
           "act": "Act: PSI above {act} for {items}. The population is no longer the one the segments were "
                  "fitted on: a full refit with `mailseg run` is advised.",
           "both": "Act: PSI between {watch} and {act} both in {features} and in the split of users across "
                   "segments ({shares}): the change in the population already shows in the segments. A full refit "
                   "with `mailseg run` is advised.",
           "and": " and ",
           "moves": "Of the {common} users present in both months, {stayers} ({p_stay}) stayed in their segment "
                    "and {movers} ({p_move}) moved; {new} users are new and {gone} are gone.",
           "features": "Features: population stability (PSI)",
           "psi_note": "PSI = Σ (p_now − p_before)·ln(p_now/p_before) over the previous month's {bins} quantile "
                       "bins: < {watch} stable, {watch}–{act} watch, > {act} act. Mean shift and spread are "
                       "measured in the previous month's standard deviations.",
           "f_cols": ["Feature", "PSI", "Reading", "Mean before", "Mean now", "Mean shift (σ)",
                      "Spread now/before"],
           "segments": "Segments: before and now", "share_psi": "PSI of the split across segments: {psi} ({band}).",
           "s_cols": ["Id", "Name before", "Name now", "Share before", "Share now", "Change (pp)",
                      "Share of PSI", "Centre shift", "Silhouette before", "Silhouette now"],
           "moves_title": "Moves between segments", "from_to": "before ↓ / now →", "gone": "gone",
           "new": "new", "moves_note": "Each cell: users and, in brackets, their part of the row (users of the "
                                       "previous segment present now).",
           "history": "Share of each segment by month", "month": "Month", "version": "Version",
           "fig_psi": "Stability of each feature (PSI) between {then} and {now}", "psi_axis": "PSI",
           "fig_moves": "From which segment to which: part of each row ({then} → {now})",
           "fig_moves_sub": "{common:,} users in both months · {p_stay} stayed in their segment · "
                            "{new:,} new · {gone:,} gone",
           "before": "before ({then})", "now": "now ({now})", "fig_history": "Share of users in each segment "
                                                                             "by month",
           "share_axis": "users (share)"},
}


def segment_state(table: pd.DataFrame) -> dict:
    """Shares, names and mean silhouette per cluster of a segment table (publish's, or segmentos.json's)."""
    sil = table["silhouette_mean"] if "silhouette_mean" in table.columns else pd.Series(np.nan, index=table.index)
    return {"shares": {int(c): float(s) for c, s in table["share"].items()},
            "names": {int(c): str(n) for c, n in table["nombre"].items()},
            "silhouette": {int(c): float(v) for c, v in sil.items()}}


def _feature(name: str, lang: str) -> str:
    label = FEATURE_LABELS[lang].get(name)
    return f"{label} ({name})" if label and label != name else name


def _what(item: dict, lang: str) -> str:
    return C[lang]["shares"] if item["what"] == "segment_shares" else FEATURE_LABELS[lang].get(item["name"],
                                                                                                 item["name"])


def _months(changes: dict) -> tuple[str, str]:
    return str(changes.get("month_then") or "–"), str(changes.get("month_now") or "–")


def verdict_text(changes: dict, lang: str) -> str:
    """The verdict in one sentence, with the PSIs that decided it and, for act, the advice to refit."""
    t, v = C[check_lang(lang)], changes["verdict"]
    def listed(items: list[dict], named: bool = True, last: str = t["and"]) -> str:
        parts = [f"{_what(i, lang)} ({_num(i['psi'], 3, lang)})" if named else _num(i["psi"], 3, lang)
                 for i in items]
        return ", ".join(parts[:-1]) + last + parts[-1] if len(parts) > 1 else "".join(parts) or "–"

    because, limits = v.get("because", []), {"watch": _num(v["psi_watch"], 2, lang), "act": _num(v["psi_act"], 2, lang)}
    if v.get("rule") == "watch_features_and_shares":
        return t["both"].format(features=listed([i for i in because if i["what"] == "feature"], last=", "),
                                shares=listed([i for i in because if i["what"] != "feature"], named=False), **limits)
    return t[v["status"]].format(items=listed(because), **limits)


def moves_text(changes: dict, lang: str) -> str:
    m = changes.get("transitions")
    if not m:
        return ""
    common = max(m["common"], 1)
    return C[lang]["moves"].format(common=_num(m["common"], 0, lang), stayers=_num(m["stayers"], 0, lang),
                                   movers=_num(m["movers"], 0, lang), new=_num(m["new"], 0, lang),
                                   gone=_num(m["gone"], 0, lang), p_stay=_pct(m["stayers"] / common, lang),
                                   p_move=_pct(m["movers"] / common, lang))


def _segment_label(changes: dict, cluster: int, key: str = "name_now") -> str:
    names = {s["cluster"]: s.get(key) or s.get("name_then") or s.get("name_now") for s in changes["segments"]}
    return f"{cluster} · {names.get(cluster) or ''}".strip(" ·")


# ---------------------------------------------------------------- figures
def psi_figure(changes: dict, path, lang: str = "es") -> object:
    """Horizontal PSI bars per feature (and the segment split), coloured by band, bands shaded behind."""
    t, v = C[check_lang(lang)], changes["verdict"]
    watch, act = v["psi_watch"], v["psi_act"]
    rows = [(_feature(f["feature"], lang), f["psi"] or 0.0, f["band"]) for f in changes["features"]]
    rows.append((_wrap(t["shares"][0].upper() + t["shares"][1:], 24), changes["share_psi"], changes["share_band"]))
    top = max([r[1] for r in rows] + [0.0])
    xmax = min(max(act * 1.6, top * 1.2), act * 4)  # a huge PSI is clipped, its value still written
    fig = Figure(figsize=(10, 1.4 + 0.42 * len(rows)))
    ax = fig.add_subplot()
    for lo, hi, name in [(0, watch, "stable"), (watch, act, "watch"), (act, xmax, "act")]:
        ax.axvspan(lo, hi, color=BAND_COLOURS[name], alpha=0.08, linewidth=0)
    pos = np.arange(len(rows))
    ax.barh(pos, [min(r[1], xmax) for r in rows], color=[BAND_COLOURS[r[2]] for r in rows],
            hatch=[""] * (len(rows) - 1) + ["//"], edgecolor="white")
    for p, (_, value, _) in zip(pos, rows):
        clipped = value > xmax
        ax.annotate(f"{value:.3f}" + (" ▸" if clipped else ""), (min(value, xmax), p),
                    xytext=(-4 if clipped else 4, 0), textcoords="offset points", va="center",
                    ha="right" if clipped else "left", fontsize=9, color="white" if clipped else "black")
    for x in (watch, act):
        ax.axvline(x, color="grey", linestyle="--", linewidth=1)
    ax.axhline(len(rows) - 1.5, color="grey", linewidth=0.8)  # features above, the segment split below
    ax.set_yticks(pos, [r[0] for r in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, xmax)
    then, now = _months(changes)
    ax.set(title=t["fig_psi"].format(then=then, now=now), xlabel=t["psi_axis"])
    bands = t["band"]
    ax.legend(handles=[Patch(color=BAND_COLOURS["stable"], label=f"{bands['stable']} < {watch:g}"),
                       Patch(color=BAND_COLOURS["watch"], label=f"{bands['watch']} {watch:g}–{act:g}"),
                       Patch(color=BAND_COLOURS["act"], label=f"{bands['act']} > {act:g}")],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _save(fig, path)


def transitions_figure(changes: dict, path, lang: str = "es"):
    """Heatmap of the transition matrix: colour and first line = share of the row, second line = users."""
    t, m = C[check_lang(lang)], changes["transitions"]
    clusters, counts, shares = m["clusters"], np.array(m["counts"], float), np.array(m["shares"], float)
    k = len(clusters)
    fig = Figure(figsize=(max(8.5, 3.2 + 1.3 * k), 2.6 + 0.8 * k))
    ax = fig.add_subplot()
    image = ax.imshow(shares.reshape(k, k), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(k):
        for j in range(k):
            ink = "white" if shares[i, j] > 0.55 else "black"
            ax.text(j, i, f"{shares[i, j]:.0%}\n{int(counts[i, j]):,}", ha="center", va="center", fontsize=9,
                    color=ink, fontweight="bold" if i == j else "normal")
    then, now = _months(changes)
    ax.set_xticks(range(k), [_wrap(_segment_label(changes, c, "name_now"), 18) for c in clusters], fontsize=8)
    ax.set_yticks(range(k), [_wrap(_segment_label(changes, c, "name_then"), 26) for c in clusters], fontsize=8)
    ax.set_xlabel(t["now"].format(now=now), fontweight="bold")
    ax.set_ylabel(t["before"].format(then=then), fontweight="bold")
    common = max(m["common"], 1)
    ax.set_title(t["fig_moves"].format(then=then, now=now) + "\n" + t["fig_moves_sub"].format(
        common=m["common"], p_stay=f"{m['stayers'] / common:.0%}", new=m["new"], gone=m["gone"]), fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.85, format=lambda x, _: f"{x:.0%}")
    return _save(fig, path)


def history_figure(changes: dict, path, lang: str = "es"):
    """One line per segment id: its share of users in every stored month, named by its latest name."""
    t, months = C[check_lang(lang)], changes["months"]
    labels = [str(m["month"]) for m in months]
    ids = sorted({int(c) for m in months for c in m["shares"]})
    fig = Figure(figsize=(11, 4.8))
    ax = fig.add_subplot()
    x = np.arange(len(months))
    for c in ids:
        y = np.array([float(m["shares"].get(c, m["shares"].get(str(c), np.nan))) for m in months])
        name = next((m["names"].get(c, m["names"].get(str(c))) for m in reversed(months)
                     if m["names"].get(c, m["names"].get(str(c)))), "")
        ax.plot(x, y, marker="o", color=_colour(c, max(len(ids), 1)), linewidth=2, label=_wrap(f"{c} · {name}", 32))
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 6 else 0)
    ax.set_xlim(-0.3, len(months) - 0.7 if len(months) > 1 else 0.3)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_ylim(bottom=0)
    ax.set(title=t["fig_history"], ylabel=t["share_axis"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(fig, path)


def change_figures(out_dir, changes: dict | None, lang: str = "es") -> dict:
    """The drift figures under <out_dir>/figuras/ (those the data allow); name → path. None: no figures."""
    if not changes:
        return {}
    folder = as_location(out_dir) / FIGURES_SUBDIR
    out = {"drift_psi": psi_figure(changes, folder / FIGURE_FILES["drift_psi"], lang)}
    if changes.get("transitions") and changes["transitions"]["clusters"]:
        out["transitions"] = transitions_figure(changes, folder / FIGURE_FILES["transitions"], lang)
    if changes.get("months"):
        out["share_history"] = history_figure(changes, folder / FIGURE_FILES["share_history"], lang)
    return out


# ---------------------------------------------------------------- tables (report and sheet)
def feature_table(changes: dict, lang: str) -> tuple[list, list[list]]:
    t = C[lang]
    return t["f_cols"], [[_feature(f["feature"], lang), f["psi"], t["band"][f["band"]], f["mean_ref"],
                          f["mean_now"], f["mean_shift_sd"], f["spread_ratio"]] for f in changes["features"]]


def segment_rows_table(changes: dict, lang: str) -> tuple[list, list[list]]:
    return C[lang]["s_cols"], [[s["cluster"], s.get("name_then"), s.get("name_now"), s.get("share_then"),
                                s.get("share_now"), 100 * s["share_change"], s["psi_term"], s.get("center_shift"),
                                s.get("silhouette_then"), s.get("silhouette_now")] for s in changes["segments"]]


def moves_table(changes: dict, lang: str) -> tuple[list, list[list], list[list]]:
    """Header, counts rows and row-share rows of the transition matrix (+ gone column, new row)."""
    t, m = C[lang], changes["transitions"]
    header = [t["from_to"]] + [_segment_label(changes, c) for c in m["clusters"]] + [t["gone"]]
    counts = [[_segment_label(changes, c, "name_then")] + row + [gone]
              for c, row, gone in zip(m["clusters"], m["counts"], m["gone_by_cluster"])]
    counts.append([t["new"]] + list(m["new_by_cluster"]) + [None])
    shares = [[_segment_label(changes, c, "name_then")] + row + [None] for c, row in zip(m["clusters"], m["shares"])]
    return header, counts, shares


def history_table(changes: dict, lang: str) -> tuple[list, list[list]]:
    t, months = C[lang], changes["months"]
    ids = sorted({int(c) for m in months for c in m["shares"]})
    header = [t["month"], t["version"]] + [_segment_label(changes, c) for c in ids]
    rows = [[m["month"], m.get("version")] + [m["shares"].get(c, m["shares"].get(str(c))) for c in ids]
            for m in months]
    return header, rows


def _figure(figures: dict, name: str) -> str:
    return _img(figures[name], name) if name in figures else ""


def _features_html(changes: dict, t: dict, lang: str) -> str:
    v, n = changes["verdict"], lambda x, d=3: _num(x, d, lang)
    header, rows = feature_table(changes, lang)
    note = t["psi_note"].format(bins=changes.get("bins", "–"), watch=n(v["psi_watch"], 2), act=n(v["psi_act"], 2))
    body = [[r[0], n(r[1]), r[2], n(r[3], 2), n(r[4], 2), n(r[5], 2), n(r[6], 2)] for r in rows]
    return (f"<h3>{_e(t['features'])}</h3><p class=muted>{_e(note)}</p>"
            + _table(header, body, numeric={1, 3, 4, 5, 6},
                     row_class=lambda i: f"band-{changes['features'][i]['band']}"))


def _segments_html(changes: dict, t: dict, lang: str) -> str:
    n = lambda x, d=3: _num(x, d, lang)
    header, rows = segment_rows_table(changes, lang)
    terms = [s["psi_term"] for s in changes["segments"]]
    top = int(np.argmax(terms)) if terms and changes["share_band"] != "stable" else -1  # the segment that moved most
    body = [[r[0], r[1] or "–", r[2] or "–", _pct(r[3], lang), _pct(r[4], lang), n(r[5], 1), n(r[6]), n(r[7], 2),
             n(r[8]), n(r[9])] for r in rows]
    share = t["share_psi"].format(psi=n(changes["share_psi"]), band=t["band"][changes["share_band"]])
    return (f"<h3>{_e(t['segments'])}</h3><p>{_e(share)}</p>"
            + _table(header, body, numeric=set(range(3, 10)),
                     row_class=lambda i: f"band-{changes['share_band']}" if i == top else ""))


def _moves_html(changes: dict, t: dict, lang: str) -> str:
    header, counts, shares = moves_table(changes, lang)
    nbsp = lambda text: text.replace(" ", "\u00a0")  # "1.234 (56,7 %)" on one line

    def cell(count, share) -> str:
        if count is None:
            return ""
        return nbsp(_num(count, 0, lang) + (f" ({_pct(share, lang)})" if share is not None else ""))

    body = [[c[0]] + [cell(x, sh) for x, sh in zip(c[1:], srow[1:])]
            for c, srow in zip(counts, [*shares, [None] * len(header)])]
    return (f"<h3>{_e(t['moves_title'])}</h3><p class=muted>{_e(t['moves_note'])}</p>"
            + _table(header, body, numeric=set(range(1, len(header)))))


def _history_html(changes: dict, t: dict, lang: str) -> str:
    header, rows = history_table(changes, lang)
    nowrap = lambda text: "–" if text is None else str(text).replace("-", "\u2011")  # months, versions on one line
    body = [[nowrap(r[0]), nowrap(r[1])] + [_pct(x, lang) if x is not None else "–" for x in r[2:]] for r in rows]
    return f"<h3>{_e(t['history'])}</h3>" + _table(header, body, numeric=set(range(2, len(header))))


def changes_section(changes: dict, lang: str, figures: dict) -> str:
    """The report's "Qué cambió" / "What changed" section (HTML): the verdict card (one sentence with the
    numbers that decided, and who moved), then features, segments, moves and months, each with its figure."""
    t, v = C[check_lang(lang)], changes["verdict"]
    title = t["since"].format(then=_months(changes)[0]) if changes.get("month_then") else t["title"]
    out = (f"<style>{CSS}</style><h2>{_e(title)}</h2><div class=\"card verdict {_e(v['status'])}\">"
           f"<p><strong>{_e(verdict_text(changes, lang))}</strong></p><p>{_e(moves_text(changes, lang))}</p></div>")
    out += _features_html(changes, t, lang) + _figure(figures, "drift_psi") + _segments_html(changes, t, lang)
    if changes.get("transitions"):
        out += _moves_html(changes, t, lang) + _figure(figures, "transitions")
    if changes.get("months"):
        out += _history_html(changes, t, lang) + _figure(figures, "share_history")
    return out


# ---------------------------------------------------------------- workbook sheet
def _cell(value):
    if isinstance(value, (str, type(None))):
        return value
    value = float(value)
    return value if np.isfinite(value) else None


def changes_sheet(changes: dict, lang: str) -> tuple[str, list[dict], dict]:
    """Sheet Cambios / Changes as (name, records, options): the verdict on row 1 (merged), the feature
    table's header as the sheet's header row, then the segments, moves and months tables below it,
    each under its own title and header row. Shares are fractions (0.25 = 25 %), PSI as is."""
    t = C[check_lang(lang)]
    header, rows = feature_table(changes, lang)
    blocks = [rows]
    for title, (head, body) in [(t["segments"], segment_rows_table(changes, lang))]:
        blocks.append([[], [title], head, *body])
    if changes.get("transitions"):
        head, counts, shares = moves_table(changes, lang)
        blocks.append([[], [t["moves_title"]], head, *counts, [], head, *shares])
    if changes.get("months"):
        head, body = history_table(changes, lang)
        blocks.append([[], [t["history"]], head, *body])
    grid = [row for block in blocks for row in block]
    width = max(len(header), *(len(r) for r in grid))
    keys = header + [" " * (i + 1) for i in range(width - len(header))]  # header cells must be distinct
    records = [{key: _cell(value) for key, value in zip(keys, row)} for row in grid]
    wrap = Format().set_text_wrap().set_align("top")
    bold = Format().set_bold().set_text_wrap().set_align("top")
    options = {"header_row": 2, "column_width": 20, "row_heights": {0: 48, 1: 32},
               "merge_ranges": [(0, 0, 0, width - 1, verdict_text(changes, lang), bold),
                                (1, 0, 1, width - 1, moves_text(changes, lang) or " ", wrap)]}
    return t["sheet"], records, options


def add_changes_sheet(sheets: list, options: dict, changes: dict | None, lang: str) -> None:
    """Append sheet Cambios / Changes to a `write_worksheets` call: its (name, records) to `sheets`, its
    per-sheet options (header row, merged verdict rows) into `options` (keyed by option, then sheet)."""
    if not changes:
        return
    name, records, own = changes_sheet(changes, lang)
    sheets.append((name, records))
    for key, value in own.items():
        options.setdefault(key, {})[name] = value
