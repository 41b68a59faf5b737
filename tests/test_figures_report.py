"""Figures are valid PNGs; the HTML report embeds every one of them and escapes the data."""

from __future__ import annotations

import base64
import re

import matplotlib.image as mpimg
import pandas as pd
import pytest
from conftest import split_with_empty
from test_export import fake_result

from mailseg_dist.core.config import load_config
from mailseg_dist.outputs.export import scored_parts
from mailseg_dist.outputs.figures import make_all_figures
from mailseg_dist.outputs.report import report_context, write_report
from mailseg_dist.segments.profiles import segment_profiles
from mailseg_dist.segments.recommend import segment_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG = '<img src="data:image/png;base64,'
MANIFEST = {"month": "2026-01", "source": "/data/in.xlsx", "sha256": "cd" * 32, "rows_in": 603, "rows_kept": 600,
            "rows_rejected": 3, "rejects_by_reason": {"send <missing>": 2, "duplicate Id": 1},
            "rejects_path": "/data/rejects/month=2026-01"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from conftest import make_clean_users

    cfg = load_config()
    users = make_clean_users()
    result = fake_result(users, cfg, k=3)
    profiles = segment_profiles(scored_parts(split_with_empty(users), result, cfg), result.k)
    return cfg, result, profiles


@pytest.mark.parametrize("lang", ["es", "en"])
def test_figures_are_valid_pngs(tmp_path, built, lang):
    cfg, result, profiles = built
    figures = make_all_figures(tmp_path, result, segment_table(profiles, cfg, lang), cfg, lang)
    assert set(figures) == {"elbow", "k_quality", "segments", "profiles", "pca", "silhouette"}
    for path in figures.values():
        assert path.parent == tmp_path / "figuras" and path.read_bytes()[:8] == PNG_SIGNATURE
        height, width, _ = mpimg.imread(path).shape
        assert 300 < width < 2000 and 200 < height < 2000
    assert not [p for p in (tmp_path / "figuras").iterdir() if p.name.startswith(".")]  # no temporaries left


def test_scatter_respects_the_point_budget(built):
    from mailseg_dist.inputs.sampling import hash_uniform
    from mailseg_dist.outputs.figures import scatter_sample

    sample = built[1].sample
    kept = scatter_sample(sample, 50, seed=7)
    assert len(kept) == 50
    assert set(kept["Id"]) == set(sample["Id"].to_numpy()[hash_uniform(sample["Id"], 7).argsort()[:50]])
    shuffled = sample.sample(frac=1.0, random_state=1)
    assert set(scatter_sample(shuffled, 50, seed=7)["Id"]) == set(kept["Id"])
    assert scatter_sample(sample, 10_000, seed=7) is sample


@pytest.mark.parametrize("lang, heading", [("es", "Segmentos"), ("en", "Segments")])
def test_report_embeds_every_figure_and_escapes_data(tmp_path, built, lang, heading):
    cfg, result, profiles = built
    table = segment_table(profiles, cfg, lang)
    table.loc[0, "nombre"] = "<script>alert(1)</script>"
    figures = make_all_figures(tmp_path, result, table, cfg, lang)
    context = report_context(MANIFEST, result, table, figures, cfg, lang, outputs={"xlsx": tmp_path / "r.xlsx"})
    page = write_report(tmp_path / "informe.html", context).read_text(encoding="utf-8")
    assert page.count(IMG) == len(figures)
    embedded = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert sorted(embedded) == sorted(base64.b64encode(p.read_bytes()).decode() for p in figures.values())
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "send &lt;missing&gt;" in page and f"<h2>{heading}</h2>" in page and f'lang="{lang}"' in page
    for name in table["nombre"]:
        assert pd.isna(name) or name.replace("<", "&lt;").replace(">", "&gt;") in page
    assert page.count('class="card') == result.k and "cd" * 32 in page


def test_report_reads_stability_and_marks_chosen_k(tmp_path, built):
    cfg, result, profiles = built
    table = segment_table(profiles, cfg)
    context = report_context(MANIFEST, result, table, {}, cfg)
    page = write_report(tmp_path / "informe.html", context).read_text(encoding="utf-8")
    # stability 0.5, 0.7, 0.9 → unstable, stable, highly stable
    assert "inestable" in page and "(estable)" in page and "muy estable" in page
    assert page.count('<tr class="chosen"><td>3</td>') == 1 and IMG not in page
    assert context["lang"] == "es" and "600" in page


@pytest.mark.parametrize("largest", [37, 146_243, 9_800_000])
def test_user_count_ticks_are_few_separated_and_never_overlap(largest):
    """The sizes panel at the default data's 146,243-user segment ran its tick labels together."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mailseg_dist.outputs.figures import users_axis

    fig = Figure(figsize=(12, 3.2))  # as segments_figure for two segments: sizes on the left half
    ax = fig.add_subplot(1, 2, 1)
    ax.barh([0, 1], [largest, largest // 5])
    ax.set_yticks([0, 1], ["Poco comprometidos de noche\n→ Reactivar con incentivo", "Rebotes: limpiar lista"])
    ax.set_xlim(0, largest * 1.35)
    users_axis(ax.xaxis)
    canvas = FigureCanvasAgg(fig)
    fig.tight_layout()
    canvas.draw()
    shown = [t for t in ax.get_xticklabels() if t.get_text() and 0 <= t.get_position()[0] <= largest * 1.35]
    boxes = sorted((t.get_window_extent(canvas.get_renderer()) for t in shown), key=lambda b: b.x0)
    assert 2 <= len(shown) <= 6
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))  # no two labels touch
    if largest >= 1000:
        assert any("," in t.get_text() for t in shown)
    assert all(float(t.get_text().replace(",", "")).is_integer() for t in shown)
