"""The viewer's words, in Spanish and English (the report's languages)."""

from __future__ import annotations

import math

T = {
    "es": {
        "title": "Segmentos de usuarios de mailing", "pages": {
            "overview": "Resumen", "segment": "Segmentos y usuarios", "user": "Buscar un usuario",
            "export": "Exportar audiencia", "months": "Meses"},
        "page": "Página", "lang": "Idioma", "month_pick": "Mes",
        "folder": "Carpeta de resultados", "not_published": "Esta carpeta no tiene resultados que mostrar",
        "month": "Mes", "input": "Fichero de entrada", "rows_in": "Filas leídas", "rows_kept": "Usuarios válidos",
        "rows_rejected": "Filas rechazadas", "k": "Número de segmentos (k)", "why": "Por qué",
        "quality": "Calidad", "silhouette": "Silueta", "stability": "Estabilidad media",
        "sil_read": [(0.7, "estructura fuerte"), (0.5, "estructura razonable"), (0.25, "estructura débil"),
                     (-2, "sin estructura clara")],
        "stab_read": {"high": "muy estable", "mid": "estable", "low": "inestable: interpretar con cautela"},
        "segments": "Segmentos", "seg_cols": ["Segmento", "Nivel", "Usuarios", "Proporción", "Acción", "Motivo"],
        "figures": "Gráficos del informe",
        "fig_captions": {"elbow": "Codo: inercia por k", "k_quality": "Calidad por k", "segments": "Tamaño de los segmentos",
                         "profiles": "Perfiles", "pca": "Mapa de usuarios (PCA)", "silhouette": "Silueta por segmento",
                         "drift_psi": "Cambio de las variables (PSI)", "transitions": "Movimientos entre segmentos",
                         "share_history": "Proporción de cada segmento por mes"},
        "all_segments": "Todos los segmentos", "segment": "Segmento", "profile": "Perfil frente a la población",
        "profile_cols": ["Medida", "Segmento", "Población"], "action": "Acción", "reason": "Motivo",
        "filters": "Filtros", "level": "Nivel", "advice": "Recomendación", "sil_range": "Silueta entre",
        "buyer": "Comprador", "buyer_opts": ["Todos", "Sí", "No"], "days": "Mejor día de envío",
        "hours": "Mejor hora de envío", "sort": "Ordenar por", "desc": "Descendente", "no_sort": "(orden del fichero)",
        "matching": "{n} usuarios coinciden", "page_of": "Página {p} de {n}", "users_table": "Usuarios",
        "search": "Id del usuario", "search_help": "Escriba el Id exacto y pulse Intro",
        "not_found": "No hay ningún usuario con Id {id}.", "found": "Usuario {id}",
        "best_time": "Mejor momento de envío", "distance": "Distancia a su centro",
        "distance_note": "en desviaciones típicas; el centro de otro segmento más cercano está a {other}",
        "distance_none": "no disponible para estas variables", "user_sil": "Silueta del usuario",
        "export_intro": "Descargue los usuarios de uno o varios segmentos (con los filtros que elija) para su "
                        "plataforma de email. El fichero se genera por partes: sirve también para millones de usuarios.",
        "export_segments": "Segmentos a exportar", "excel": "Excel en español (UTF-8 con BOM y separador ;)",
        "export_button": "Descargar CSV ({n} usuarios)", "export_cols": "Columnas: Id, segmento, recomendación, "
                                                                         "mejor momento de envío.",
        "months_intro": "Cada actualización mensual se guarda; elija un mes en la barra lateral para ver sus segmentos.",
        "shares": "Proporción de cada segmento por mes", "moves": "Quién cambió de segmento",
        "moves_help": "Usuarios presentes en ambos meses: filas = segmento en {a}, columnas = segmento en {b}.",
        "one_month": "Esta carpeta tiene un solo mes; los meses aparecen tras `mailseg update`.",
        "from": "Desde", "to": "Hasta", "movers": "Algunos usuarios que pasaron de «{a}» a «{b}»",
        "population": "Todos los usuarios", "yes": "Sí", "no": "No", "choose": "Elija…",
        "columns": {"Id": "Id", "segmento": "Segmento", "nivel": "Nivel", "best_time": "Mejor momento",
                    "recomendacion": "Recomendación", "silhouette_score": "Silueta", "Comprador": "Comprador",
                    "send": "Envíos", "open": "Aperturas", "click": "Clics", "bounce": "Rebotes",
                    "engagement_score": "Compromiso", "Total": "Total", "hour": "Hora media",
                    "day_of_week": "Día medio (0 = lunes)", "cluster": "Nº de segmento"},
        "segment_then": "Segmento en {m}",
        "metrics": {"send_mean": "Envíos (media)", "open_rate": "Tasa de apertura", "click_rate": "Clics por apertura",
                    "bounce_rate": "Tasa de rebote", "buyer_rate": "Compradores",
                    "engagement_score_mean": "Compromiso (media)", "typical_hour": "Hora típica",
                    "typical_day": "Día típico"},
    },
    "en": {
        "title": "Mailing user segments", "pages": {
            "overview": "Overview", "segment": "Segments and users", "user": "Find a user",
            "export": "Export an audience", "months": "Months"},
        "page": "Page", "lang": "Language", "month_pick": "Month",
        "folder": "Results folder", "not_published": "This folder has no results to show",
        "month": "Month", "input": "Input file", "rows_in": "Rows read", "rows_kept": "Valid users",
        "rows_rejected": "Rows rejected", "k": "Number of segments (k)", "why": "Why",
        "quality": "Quality", "silhouette": "Silhouette", "stability": "Mean stability",
        "sil_read": [(0.7, "strong structure"), (0.5, "reasonable structure"), (0.25, "weak structure"),
                     (-2, "no clear structure")],
        "stab_read": {"high": "highly stable", "mid": "stable", "low": "unstable: read with care"},
        "segments": "Segments", "seg_cols": ["Segment", "Level", "Users", "Share", "Action", "Reason"],
        "figures": "The report's figures",
        "fig_captions": {"elbow": "Elbow: inertia by k", "k_quality": "Quality by k", "segments": "Segment sizes",
                         "profiles": "Profiles", "pca": "Map of users (PCA)", "silhouette": "Silhouette by segment",
                         "drift_psi": "Feature change (PSI)", "transitions": "Moves between segments",
                         "share_history": "Each segment's share by month"},
        "all_segments": "All segments", "segment": "Segment", "profile": "Profile against the population",
        "profile_cols": ["Measure", "Segment", "Population"], "action": "Action", "reason": "Reason",
        "filters": "Filters", "level": "Level", "advice": "Recommendation", "sil_range": "Silhouette between",
        "buyer": "Buyer", "buyer_opts": ["All", "Yes", "No"], "days": "Best send day",
        "hours": "Best send hour", "sort": "Sort by", "desc": "Descending", "no_sort": "(file order)",
        "matching": "{n} users match", "page_of": "Page {p} of {n}", "users_table": "Users",
        "search": "User Id", "search_help": "Type the exact Id and press Enter",
        "not_found": "No user has Id {id}.", "found": "User {id}",
        "best_time": "Best send time", "distance": "Distance to its centre",
        "distance_note": "in standard deviations; the nearest other segment's centre is {other} away",
        "distance_none": "not available for these features", "user_sil": "User's silhouette",
        "export_intro": "Download the users of one or more segments (with the filters you choose) for your email "
                        "platform. The file is written in parts, so millions of users are fine.",
        "export_segments": "Segments to export", "excel": "Spanish Excel (UTF-8 with BOM, ; separator)",
        "export_button": "Download CSV ({n} users)", "export_cols": "Columns: Id, segment, recommendation, "
                                                                    "best send time.",
        "months_intro": "Each monthly update is kept; pick a month in the sidebar to see its segments.",
        "shares": "Each segment's share by month", "moves": "Who moved between segments",
        "moves_help": "Users present in both months: rows = segment in {a}, columns = segment in {b}.",
        "one_month": "This folder holds one month; months appear after `mailseg update`.",
        "from": "From", "to": "To", "movers": "Some users who moved from “{a}” to “{b}”",
        "population": "All users", "yes": "Yes", "no": "No", "choose": "Choose…",
        "columns": {"Id": "Id", "segmento": "Segment", "nivel": "Level", "best_time": "Best time",
                    "recomendacion": "Recommendation", "silhouette_score": "Silhouette", "Comprador": "Buyer",
                    "send": "Sends", "open": "Opens", "click": "Clicks", "bounce": "Bounces",
                    "engagement_score": "Engagement", "Total": "Total", "hour": "Mean hour",
                    "day_of_week": "Mean weekday (0 = Monday)", "cluster": "Segment no."},
        "segment_then": "Segment in {m}",
        "metrics": {"send_mean": "Sends (mean)", "open_rate": "Open rate", "click_rate": "Clicks per open",
                    "bounce_rate": "Bounce rate", "buyer_rate": "Buyers",
                    "engagement_score_mean": "Engagement (mean)", "typical_hour": "Typical hour",
                    "typical_day": "Typical day"},
    },
}
PERCENT = {"open_rate", "click_rate", "bounce_rate", "buyer_rate"}


def num(value, digits: int, lang: str) -> str:
    """A number as people read it in `lang` (es: 1.234,5; en: 1,234.5); – for a missing one."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(value):
        return "–"
    text = f"{value:,.{digits}f}"
    return text.translate(str.maketrans(",.", ".,")) if lang == "es" else text


def pct(value, lang: str, digits: int = 1) -> str:
    try:
        return num(100 * float(value), digits, lang) + " %"
    except (TypeError, ValueError):
        return "–"


def missing(value) -> bool:
    """None or NaN."""
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True
