"""Every word a marketer reads, in Spanish (default) and English.

Keys are grouped by use: segment names, actions, per-user advice, spreadsheet
headers. Figure and report labels live beside their modules' code as plain
`{"es": ..., "en": ...}` pairs; this file holds the texts shared by several.
"""

from __future__ import annotations

from mailseg_dist.core.settings import LANGS  # declared once, with the config table

WEEKDAYS = {
    "es": ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
}

# Time of day of a segment's typical hour: (first hour, code); see profiles.time_of_day.
TIME_OF_DAY = {
    "es": {"night": "de madrugada", "morning": "de mañana", "afternoon": "de tarde", "evening": "de noche"},
    "en": {"night": "night-time", "morning": "morning", "afternoon": "afternoon", "evening": "evening"},
}
TIME_OF_DAY_NOUN = {
    "es": {"night": "madrugada", "morning": "mañana", "afternoon": "tarde", "evening": "noche"},
    "en": {"night": "night", "morning": "morning", "afternoon": "afternoon", "evening": "evening"},
}
WEEK_PART = {
    "es": {"early": "inicio de semana", "mid": "mitad de semana", "late": "final de semana"},
    "en": {"early": "early week", "mid": "midweek", "late": "late week"},
}

LEVEL = {"es": {"high": "Alta", "low": "Baja"}, "en": {"high": "High", "low": "Low"}}

SEGMENT_NAMES = {
    "es": {
        "empty": "Sin usuarios",
        "bounce": "Rebotes: limpiar lista",
        "core": "Núcleo muy comprometido",
        "loyal_low_open": "Compradores fieles poco lectores",
        "heavy_core": "Muy enviados y muy comprometidos",
        "heavy_moderate": "Muy enviados, compromiso moderado",
        "heavy_low": "Muy enviados, poco comprometidos",
        "light_barely_open": "Poco enviados {tod} que apenas abren",
        "openers": "Lectores {tod}",
        "engaged": "Comprometidos {tod}",
        "unengaged": "Poco comprometidos {tod}",
    },
    "en": {
        "empty": "No users",
        "bounce": "Bouncers: clean the list",
        "core": "Highly engaged core",
        "loyal_low_open": "Loyal buyers who rarely open",
        "heavy_core": "Heavily mailed, highly engaged",
        "heavy_moderate": "Heavily mailed, moderately engaged",
        "heavy_low": "Heavily mailed, little engaged",
        "light_barely_open": "Lightly mailed {tod} users who barely open",
        "openers": "{Tod} openers",
        "engaged": "Engaged {tod} users",
        "unengaged": "Little engaged {tod} users",
    },
}

QUALIFIERS = {
    "es": {"more": "más comprometidos", "less": "menos comprometidos", "rank": "compromiso n.º {i}",
           "size": "n.º {i} por tamaño"},
    "en": {"more": "more engaged", "less": "less engaged", "rank": "engagement #{i}", "size": "#{i} by size"},
}

# Segment actions: code -> (short form used in per-user advice, full action).
ACTIONS = {
    "es": {
        "none": ("Sin acción", "Ningún usuario cae en este segmento: no requiere acción."),
        "hygiene": ("Higiene de lista",
                    "Higiene de lista: validar las direcciones, suprimir los rebotes duros y dejarlos fuera "
                    "de las promociones hasta confirmar que reciben el correo."),
        "other_channels": ("Otros canales y menos email",
                           "Compran pero apenas leen el email: llegar por otros canales (SMS, push, web, app), "
                           "bajar la frecuencia de email y reservarlo para mensajes transaccionales y de valor."),
        "reduce_frequency": ("Reducir frecuencia y reactivar",
                             "Reducir la frecuencia de envío, lanzar una campaña de reactivación y aplicar un "
                             "flujo de baja (sunset: último correo y supresión) a quien siga sin responder."),
        "loyalty": ("Fidelizar con ofertas exclusivas",
                    "Premiar y fidelizar: ofertas exclusivas, programa de fidelización y pedir su opinión "
                    "(encuestas, reseñas)."),
        "reactivate": ("Reactivar con incentivo",
                       "Reactivar: reenviar campañas con un incentivo, encuesta breve de preferencias y "
                       "segmentar más por interés."),
    },
    "en": {
        "none": ("No action", "No user falls in this segment: nothing to do."),
        "hygiene": ("List hygiene",
                    "List hygiene: validate the addresses, suppress hard bounces and keep them out of "
                    "promotions until they are confirmed to receive mail."),
        "other_channels": ("Other channels, less email",
                           "They buy but barely read email: reach them through other channels (SMS, push, web, "
                           "app), lower the email frequency and keep email for transactional and high-value "
                           "messages."),
        "reduce_frequency": ("Reduce frequency and re-engage",
                             "Lower the sending frequency, run a re-engagement campaign and put those who still "
                             "do not respond into a sunset flow (one last email, then suppression)."),
        "loyalty": ("Reward with exclusive offers",
                    "Reward and retain: exclusive offers, a loyalty programme and ask for their feedback "
                    "(surveys, reviews)."),
        "reactivate": ("Re-engage with an incentive",
                       "Re-engage: resend campaigns with an incentive, a short preference survey and segment "
                       "further by interest."),
    },
}

REASONS = {
    "es": {
        "none": "El segmento no tiene usuarios en estos datos.",
        "hygiene": "Tasa de rebote {bounce_rate:.0%} (umbral {threshold:.0%}; población {pop_bounce_rate:.0%}).",
        "other_channels": "Compradores {buyer_rate:.0%} (umbral {threshold:.0%}) con tasa de apertura "
                          "{open_rate:.1%}, por debajo de la población ({pop_open_rate:.1%}).",
        "reduce_frequency": "Reciben {send:.1f} envíos de media ({send_ratio:.1f}× la población; umbral "
                            "{threshold:.1f}×) y abren {open_rate:.1%} frente a {pop_open_rate:.1%}.",
        "loyalty": "Compromiso medio {engagement:.2f}, {engagement_ratio:.1f}× la media de la población "
                   "({pop_engagement:.2f}).",
        "reactivate": "Compromiso medio {engagement:.2f} frente a {pop_engagement:.2f} de la población: no "
                      "supera {threshold:g}× la media.",
    },
    "en": {
        "none": "The segment has no users in these data.",
        "hygiene": "Bounce rate {bounce_rate:.0%} (threshold {threshold:.0%}; population {pop_bounce_rate:.0%}).",
        "other_channels": "Buyers {buyer_rate:.0%} (threshold {threshold:.0%}) with an open rate of "
                          "{open_rate:.1%}, below the population's ({pop_open_rate:.1%}).",
        "reduce_frequency": "They receive {send:.1f} emails on average ({send_ratio:.1f}× the population; "
                            "threshold {threshold:.1f}×) and open {open_rate:.1%} against {pop_open_rate:.1%}.",
        "loyalty": "Mean engagement {engagement:.2f}, {engagement_ratio:.1f}× the population mean "
                   "({pop_engagement:.2f}).",
        "reactivate": "Mean engagement {engagement:.2f} against {pop_engagement:.2f} for the population: not "
                      "above {threshold:g}× the mean.",
    },
}

# Per-user advice pieces (recommend.user_recommendations joins them).
USER = {
    "es": {
        "timing": "mejor momento: {weekday} hacia las {hour}:00",
        "hygiene": "Higiene: rebotes ≥ envíos, verificar la dirección y suprimirla hasta confirmarla",
        "sunset": "Sunset: {send} envíos sin aperturas ni clics, último correo de recuperación y después suprimir",
        "reengage": "Reactivación: {send} envíos sin aperturas ni clics, un correo de recuperación con "
                    "incentivo y, sin respuesta, sunset",
        "segment": "segmento",
    },
    "en": {
        "timing": "best time: {weekday} around {hour}:00",
        "hygiene": "Hygiene: bounces ≥ sends, verify the address and suppress it until confirmed",
        "sunset": "Sunset: {send} emails without opens or clicks, one last win-back email then suppress",
        "reengage": "Re-engagement: {send} emails without opens or clicks, one win-back email with an "
                    "incentive and, without response, sunset",
        "segment": "segment",
    },
}

# Recomendaciones sheet / report segment table headers, keyed by segment-table column.
SEGMENT_HEADERS = {
    "es": {"cluster": "cluster", "nombre": "Nombre", "nivel": "Nivel de compromiso", "size": "Usuarios",
           "share": "Proporción", "send_mean": "Envíos (media)", "open_mean": "Aperturas (media)",
           "click_mean": "Clics (media)", "bounce_mean": "Rebotes (media)", "buyer_rate": "Tasa de compra",
           "open_rate": "Tasa de apertura", "click_rate": "Clics por apertura", "bounce_rate": "Tasa de rebote",
           "engagement_score_mean": "Compromiso (media)", "engagement_score_median": "Compromiso (mediana)",
           "typical_hour": "Hora típica", "typical_day": "Día típico", "silhouette_mean": "Silueta media",
           "accion": "Acción", "motivo": "Motivo"},
    "en": {"cluster": "cluster", "nombre": "Name", "nivel": "Engagement level", "size": "Users",
           "share": "Share", "send_mean": "Sends (mean)", "open_mean": "Opens (mean)",
           "click_mean": "Clicks (mean)", "bounce_mean": "Bounces (mean)", "buyer_rate": "Buyer rate",
           "open_rate": "Open rate", "click_rate": "Clicks per open", "bounce_rate": "Bounce rate",
           "engagement_score_mean": "Engagement (mean)", "engagement_score_median": "Engagement (median)",
           "typical_hour": "Typical hour", "typical_day": "Typical day", "silhouette_mean": "Mean silhouette",
           "accion": "Action", "motivo": "Reason"},
}

POPULATION = {"es": "Todos los usuarios", "en": "All users"}


class Number(float):
    """A float that formats with the language's decimal mark: f"{Number(2.5, 'es'):.2f}" == "2,50"."""

    def __new__(cls, value, lang: str = "en"):
        number = super().__new__(cls, value)
        number.lang = lang
        return number

    def __format__(self, spec: str) -> str:
        text = format(float(self), spec)
        return text.translate(str.maketrans(",.", ".,")) if self.lang == "es" else text


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise ValueError(f"lang expected one of {', '.join(LANGS)}, found {lang!r}")
    return lang


def pick(pair: dict, lang: str) -> str:
    """The `lang` text of a {"es": ..., "en": ...} pair."""
    return pair[check_lang(lang)]


K_REASON = {
    "en": {"no_knee": "{n} candidate(s), no inertia knee", "knee": "inertia knee (Kneedle) at k={k}{tied}; silhouettes within ±{w}",
           "tied": " (tied with k={ks} within {tol:g}: the smaller k is taken)",
           "aside": "; set aside for a segment under {share:.0%} of users: {ks}",
           "guard_lost": "; every k near the knee has a segment under {share:.0%} of users ({ks}): that guard could not be kept",
           "pick": "; picked k={k} (highest silhouette, ties to the smaller k)",
           "fixed": "k={k} fixed by config (model.k / --k)",
           "update": "k={k} from the previous model (monthly update: each segment keeps its id)",
           "sampled": "; searched on a hashed sample of {n:,} of the {total:,} users (selection.search_rows), "
                      "the chosen k then fitted on all of them"},
    "es": {"no_knee": "{n} candidata(s), sin codo de inercia", "knee": "codo de la inercia (Kneedle) en k={k}{tied}; siluetas a ±{w}",
           "tied": " (empate con k={ks}, a menos de {tol:g}: se toma la k menor)",
           "aside": "; descartadas por tener un segmento con menos del {share:.0%} de los usuarios: {ks}",
           "guard_lost": "; todas las k cerca del codo tienen un segmento con menos del {share:.0%} de los usuarios "
                         "({ks}): no se pudo respetar ese mínimo",
           "pick": "; elegida k={k} (la silueta más alta; en empate, la k menor)",
           "fixed": "k={k} fijada por configuración (model.k / --k)",
           "update": "k={k} del modelo anterior (actualización mensual: cada segmento conserva su id)",
           "sampled": "; búsqueda en una muestra (por hash) de {n:,} de los {total:,} usuarios (selection.search_rows), "
                      "y la k elegida ajustada después con todos"},
}


def _tied_text(why: dict, words: dict) -> str:
    """The k whose knee was within the tolerance of the chosen one (reasons saved before it had none)."""
    tied = why.get("tied") or []
    return words["tied"].format(tol=why["tolerance"], ks=", ".join(map(str, tied))) if tied else ""


def k_reason_text(why: dict, lang: str) -> str:
    """One sentence, in `lang`, from the structured reason `model.selection.choose_k` (or the fit) returns."""
    words = K_REASON[check_lang(lang)]
    if why["rule"] in ("fixed", "update"):
        return words[why["rule"]].format(k=why["k"])
    head = words["no_knee"].format(n=why["candidates"]) if why["rule"] == "no_knee" else \
        words["knee"].format(k=why["knee"], w=why["window"], tied=_tied_text(why, words))
    compared = ", ".join(f"k={k}: " + ("n/a" if s is None else f"{s:.3f}") for k, s in why["silhouettes"].items())
    under = ", ".join(f"k={k} ({share:.2%})" for k, share in why["under_min_share"].items())
    guard = "" if not under else words["aside" if why["guard_kept"] else "guard_lost"].format(
        share=why["min_segment_share"], ks=under)
    sampled = words["sampled"].format(n=why["search_rows"], total=why["n_rows"]) if "search_rows" in why else ""
    return f"{head}: {compared}{guard}" + words["pick"].format(k=why["k"]) + sampled
