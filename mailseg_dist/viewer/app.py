"""The `mailseg view` page script (Streamlit): thin over mailseg_dist.viewer.queries.

The output folder and language come from `-- --out DIR --lang es|en` (as `mailseg view` starts it) or from
MAILSEG_VIEW_OUT / MAILSEG_VIEW_LANG. The page only reads the folder; the audience download is a link to
the server's streamed /export.csv route (mailseg_dist/viewer/serve.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from mailseg_dist.core.errors import MailsegError
from mailseg_dist.segments.texts import WEEKDAYS
from mailseg_dist.viewer import queries as q
from mailseg_dist.viewer.texts import PERCENT, T, missing, num, pct

PAGE_SIZE = 50
PAGES = ("overview", "segment", "user", "export", "months")


def _settings() -> tuple[str, str]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--out")
    parser.add_argument("--lang")
    args, _ = parser.parse_known_args(sys.argv[1:])
    out = args.out or os.environ.get("MAILSEG_VIEW_OUT") or "Resultados"
    lang = args.lang or os.environ.get("MAILSEG_VIEW_LANG") or "es"
    return out, lang if lang in T else "es"


@st.cache_data(show_spinner=False, max_entries=32)
def _advice_kinds(base: str, version: str | None, month: str | None, _results) -> dict:
    return q.advice_kinds(_results)


@st.cache_data(show_spinner=False, max_entries=64)
def _count(base: str, version: str | None, params: tuple, _results, _filters) -> int:
    return q.count(_results, _filters)


@st.cache_data(show_spinner=False, max_entries=64)
def _page(base: str, version: str | None, params: tuple, offset: int, sort_by, desc: bool, _results, _filters):
    return q.page(_results, _filters, offset=offset, limit=PAGE_SIZE, sort_by=sort_by, descending=desc)


def _stability_reading(value, t) -> str:
    if missing(value):
        return "–"
    return t["stab_read"]["high" if value > 0.85 else "mid" if value >= 0.6 else "low"]


def _metric_text(key: str, value, lang: str) -> str:
    if key in PERCENT:
        return pct(value, lang)
    if key == "typical_hour":
        return "–" if missing(value) else f"{int(value)}:00"
    if key == "typical_day":
        return "–" if missing(value) else WEEKDAYS[lang][int(value)]
    return num(value, 2, lang)


def overview(results: q.Results, t: dict, lang: str) -> None:
    s = results.summary
    st.header(f"{t['pages']['overview']} — {s.get('month', '')}")
    cols = st.columns(4)
    cols[0].metric(t["month"], s.get("month", "–"))
    cols[1].metric(t["rows_kept"], num(s.get("rows_kept"), 0, lang))
    cols[2].metric(t["rows_rejected"], num(s.get("rows_rejected"), 0, lang))
    cols[3].metric(t["k"], s.get("k", "–"))
    st.markdown(f"**{t['input']}:** `{s.get('input', '–')}` · **{t['rows_in']}:** {num(s.get('rows_in'), 0, lang)}")
    st.markdown(f"**{t['why']}:** {s.get('k_reason', '–')}")
    sil = s.get("silhouette")
    reading = next((text for cut, text in t["sil_read"] if sil is not None and sil > cut), "–")
    stability = s.get("stability") or {}
    stab = sum(stability.values()) / len(stability) if stability else None
    st.subheader(t["quality"])
    cols = st.columns(2)
    cols[0].metric(t["silhouette"], num(sil, 3, lang), reading, delta_color="off")
    cols[1].metric(t["stability"], num(stab, 2, lang), _stability_reading(stab, t), delta_color="off")
    st.subheader(t["segments"])
    table = results.segments()
    rows = [[r["nombre"], r["nivel"], num(r["size"], 0, lang), pct(r["share"], lang), r["accion_corta"], r["motivo"]]
            for _, r in table.iterrows()]
    st.table(pd.DataFrame(rows, columns=t["seg_cols"]).set_index(t["seg_cols"][0]))
    figures = results.figures()
    if figures:
        st.subheader(t["figures"])
        names = list(figures)
        for i in range(0, len(names), 2):
            cols = st.columns(2)
            for col, name in zip(cols, names[i:i + 2]):
                col.image(figures[name].read_bytes(), caption=t["fig_captions"].get(name, name))  # local or store


def filter_widgets(results: q.Results, t: dict, lang: str, key: str, levels: bool = True) -> tuple[q.Filters, list]:
    """The filter widgets (level, advice, silhouette, buyer, send day and hour) → (Filters, advice kinds)."""
    kinds_map = _advice_kinds(str(results.base), results.version, results.month, results)
    with st.expander(t["filters"], expanded=True):
        c1, c2 = st.columns(2)
        chosen_levels = c1.multiselect(t["level"], ["Alta", "Baja"], key=f"{key}_levels",
                                                    placeholder=t["choose"]) if levels else []
        kinds = c2.multiselect(t["advice"], list(kinds_map), key=f"{key}_advice", placeholder=t["choose"])
        c1, c2, c3 = st.columns(3)
        sil = c1.slider(t["sil_range"], -1.0, 1.0, (-1.0, 1.0), 0.05, key=f"{key}_sil")
        buyer = c2.radio(t["buyer"], t["buyer_opts"], horizontal=True, key=f"{key}_buyer")
        days = c3.multiselect(t["days"], list(range(7)), format_func=lambda d: WEEKDAYS[lang][d], key=f"{key}_days",
                             placeholder=t["choose"])
        hours = st.slider(t["hours"], 0, 23, (0, 23), key=f"{key}_hours")
    texts = tuple(x for k in kinds for x in kinds_map[k]) or None
    filters = q.Filters(levels=tuple(chosen_levels) or None, recommendations=texts,
                        silhouette=None if sil == (-1.0, 1.0) else (float(sil[0]), float(sil[1])),
                        buyer={0: None, 1: True, 2: False}[t["buyer_opts"].index(buyer)],
                        days=tuple(days) or None, hours=None if hours == (0, 23) else (int(hours[0]), int(hours[1])))
    return filters, kinds


def _key(filters: q.Filters, kinds: list) -> tuple:
    return tuple(sorted(q.to_params(filters, kinds).items()))


def segment_page(results: q.Results, t: dict, lang: str) -> None:
    st.header(t["pages"]["segment"])
    table = results.segments()
    options = [None, *table.index.tolist()]
    chosen = st.selectbox(t["segment"], options, key="seg_pick",
                          format_func=lambda c: t["all_segments"] if c is None else f"{table.loc[c, 'nombre']} "
                                                                                   f"({table.loc[c, 'nivel']})")
    if chosen is not None:
        row = table.loc[chosen]
        pop = table.attrs.get("population", {})
        st.markdown(f"**{t['action']}:** {row['accion']}  \n**{t['reason']}:** {row['motivo']}")
        st.markdown(f"**{t['rows_kept']}:** {num(row['size'], 0, lang)} ({pct(row['share'], lang)})")
        st.subheader(t["profile"])
        prof = [[label, _metric_text(k, row.get(k), lang), _metric_text(k, pop.get(k), lang)]
                for k, label in t["metrics"].items()]
        st.table(pd.DataFrame(prof, columns=t["profile_cols"]).set_index(t["profile_cols"][0]))
    filters, kinds = filter_widgets(results, t, lang, "seg", levels=chosen is None)
    if chosen is not None:
        filters = q.Filters(**{**filters.__dict__, "clusters": (int(chosen),)})
    total = _count(str(results.base), results.version, _key(filters, kinds), results, filters)
    st.subheader(t["users_table"])
    st.markdown(t["matching"].format(n=num(total, 0, lang)))
    sortable = [c for c in q.SORTABLE if c in results.users().schema.names]
    c1, c2, c3 = st.columns([2, 1, 1])
    sort_by = c1.selectbox(t["sort"], [None, *sortable], key="seg_sort",
                           format_func=lambda c: t["no_sort"] if c is None else t["columns"].get(c, c))
    desc = c2.checkbox(t["desc"], key="seg_desc")
    pages = max(1, -(-total // PAGE_SIZE))
    number = c3.number_input(t["page"], 1, pages, 1, key="seg_page")
    st.caption(t["page_of"].format(p=number, n=pages))
    frame = _page(str(results.base), results.version, _key(filters, kinds), (number - 1) * PAGE_SIZE, sort_by, desc,
                  results, filters)
    st.dataframe(_shown(frame, t, lang), hide_index=True, width="stretch")
    _export_link(results, filters, kinds, t, total, "seg")


def _shown(frame: pd.DataFrame, t: dict, lang: str) -> pd.DataFrame:
    """A page of users as a marketer reads it: best send time instead of mean hour and weekday, own words."""
    out = frame.copy()
    if {"day_of_week", "hour"} <= set(out.columns):
        best = [q.best_time(d, h) for d, h in zip(out["day_of_week"], out["hour"])]
        out.insert(3, "best_time", [f"{WEEKDAYS[lang][d]} {h:02d}:00" for d, h in best])
        out = out.drop(columns=["day_of_week", "hour"])
    if "Comprador" in out.columns:
        out["Comprador"] = out["Comprador"].map({1: t["yes"], 0: t["no"]})
    if "silhouette_score" in out.columns:
        out["silhouette_score"] = out["silhouette_score"].round(3)
    return out.drop(columns=["cluster"], errors="ignore").rename(columns=t["columns"])


def user_page(results: q.Results, t: dict, lang: str) -> None:
    st.header(t["pages"]["user"])
    typed = st.text_input(t["search"], key="user_id", help=t["search_help"])
    if not typed.strip():
        return
    user = q.find_user(results, typed)
    if user is None:
        st.warning(t["not_found"].format(id=typed.strip()))
        return
    day, hour = user["best_time"]
    st.subheader(t["found"].format(id=user["Id"]))
    st.markdown(f"**{t['segment']}:** {user['segmento']} ({t['level'].lower()} {user['nivel']})")
    c1, c2 = st.columns(2)
    c1.metric(t["best_time"], f"{WEEKDAYS[lang][day]} {hour:02d}:00")
    c2.metric(t["user_sil"], num(user["silhouette_score"], 3, lang))
    st.markdown(f"**{t['advice']}:** {user['recomendacion']}")
    if user["distance"] is None:
        st.markdown(f"**{t['distance']}:** {t['distance_none']}")
    else:
        st.markdown(f"**{t['distance']}:** {num(user['distance'], 2, lang)} "
                    f"({t['distance_note'].format(other=num(user['distance_other'], 2, lang))})")
    skip = ("Id", "best_time", "distance", "distance_other", "pca1", "pca2", "segmento", "nivel", "recomendacion",
            "silhouette_score", "cluster")
    shown = {t["columns"].get(k, k): (num(v, 2, lang) if isinstance(v, float) else str(v))
             for k, v in user.items() if k not in skip}
    st.table(pd.DataFrame({"": list(shown), " ": list(shown.values())}).set_index(""))


def export_page(results: q.Results, t: dict, lang: str) -> None:
    st.header(t["pages"]["export"])
    st.markdown(t["export_intro"])
    table = results.segments()
    picked = st.multiselect(t["export_segments"], table.index.tolist(), key="exp_segments", placeholder=t["choose"],
                            format_func=lambda c: str(table.loc[c, "nombre"]))
    filters, kinds = filter_widgets(results, t, lang, "exp")
    filters = q.Filters(**{**filters.__dict__, "clusters": tuple(int(c) for c in picked) or None})
    total = _count(str(results.base), results.version, _key(filters, kinds), results, filters)
    st.markdown(t["matching"].format(n=num(total, 0, lang)))
    _export_link(results, filters, kinds, t, total, "exp")


def _export_link(results: q.Results, filters: q.Filters, kinds: list, t: dict, total: int, key: str) -> None:
    excel = st.checkbox(t["excel"], value=True, key=f"{key}_excel")
    params = {**q.to_params(filters, kinds), "lang": st.session_state.get("lang", "es"),
              "excel": "1" if excel else "0"}
    if results.version and results.base != results.root:
        params["month"] = results.month
    st.link_button(t["export_button"].format(n=num(total, 0, st.session_state.get("lang", "es"))),
                   "/export.csv?" + urlencode(params), type="primary", disabled=total == 0)
    st.caption(t["export_cols"])


def months_page(results: q.Results, root: q.Results, t: dict, lang: str) -> None:
    st.header(t["pages"]["months"])
    months = [m["month"] for m in root.months()]
    if len(months) < 2:
        st.info(t["one_month"])
    else:
        st.markdown(t["months_intro"])
    shares = q.month_shares(root)
    if not shares.empty:
        st.subheader(t["shares"])
        wide = shares.pivot_table(index="month", columns="name", values="share", aggfunc="last")
        wide.index.name, wide.columns.name = t["month"], None
        st.line_chart(wide)
        st.table(wide.map(lambda v: pct(v, lang)))
    if len(months) >= 2:
        st.subheader(t["moves"])
        c1, c2 = st.columns(2)
        default_to = months.index(results.month) if results.month in months else len(months) - 1
        to = c2.selectbox(t["to"], months, index=max(default_to, 1), key="mv_to")
        earlier = [m for m in months if m < to] or months[:1]
        frm = c1.selectbox(t["from"], earlier, index=len(earlier) - 1, key="mv_from")
        matrix = q.transitions(root, frm, to)
        names = results.segments()["nombre"].to_dict()
        st.caption(t["moves_help"].format(a=frm, b=to))
        if not matrix.empty:
            shown = matrix.rename(index=lambda c: names.get(c, c), columns=lambda c: names.get(c, c))
            shown.index.name, shown.columns.name = t["segment_then"].format(m=frm), None
            st.table(shown.map(lambda v: num(v, 0, lang)))
            moved = matrix.where(matrix.index.to_numpy()[:, None] != matrix.columns.to_numpy()[None, :], 0).stack()
            big_a, big_b = moved.idxmax() if len(moved) else (matrix.index[0], matrix.columns[0])
            c1, c2 = st.columns(2)  # by default the biggest move between two different segments
            a = c1.selectbox(t["from"] + " ", matrix.index.tolist(), index=matrix.index.tolist().index(big_a),
                             key="mv_a", format_func=lambda c: names.get(c, c))
            b = c2.selectbox(t["to"] + " ", matrix.columns.tolist(), index=matrix.columns.tolist().index(big_b),
                             key="mv_b", format_func=lambda c: names.get(c, c))
            st.markdown(t["movers"].format(a=names.get(a, a), b=names.get(b, b)))
            st.table(q.movers(root, frm, to, a, b, limit=20))


def main() -> None:
    out, default_lang = _settings()
    st.set_page_config(page_title="mailseg", layout="wide")
    if "lang" not in st.session_state:
        st.session_state["lang"] = default_lang
    lang = st.sidebar.radio("Idioma / Language", list(T), key="lang",
                            format_func=lambda x: {"es": "Español", "en": "English"}[x], horizontal=True)
    t = T[lang]
    st.title(t["title"])
    try:
        root = q.open_results(out)
    except MailsegError as exc:
        st.error(f"**{t['not_published']}.** {exc}")
        return
    months = [m["month"] for m in root.months()]
    results = root
    if len(months) > 1:
        month = st.sidebar.selectbox(t["month_pick"], months[::-1], key="month")
        try:
            results = root.for_month(month)
        except MailsegError as exc:
            st.error(str(exc))
            return
    page = st.sidebar.radio(t["page"], PAGES, key="page", format_func=lambda p: t["pages"][p])
    st.sidebar.caption(f"{t['folder']}: {root.root}")
    try:
        if page == "overview":
            overview(results, t, lang)
        elif page == "segment":
            segment_page(results, t, lang)
        elif page == "user":
            user_page(results, t, lang)
        elif page == "export":
            export_page(results, t, lang)
        else:
            months_page(results, root, t, lang)
    except MailsegError as exc:
        st.error(f"**{t['not_published']}.** {exc}")


main()
