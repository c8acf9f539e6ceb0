"""The papers' series views: what each method's :class:`~selfsup.modalities.base.ViewPlan` becomes on
series, before the config's ``augment.common`` and ``augment.views`` overrides.

Styles with a paper behind them: ``ts2vec`` (one clean series; the method crops it itself),
``tstcc`` (TS-TCC's weak and strong views, the HAR config's strengths), ``tfc`` (the series and its
jittered copy; TF-C augments the spectrum itself), ``frameproj`` (one clean series: frame projections
uses no augmentation). The generic joint-embedding methods (SimCLR, BYOL, VICReg, ...) get
:func:`generic_views`, this library's choice (no paper defines them for series).
"""

from __future__ import annotations

from ...errors import UsageError
from ..base import ViewPlan
from .views import SeriesViewConfig

# TS-TCC's HAR config (config_files/HAR_Configs.py): jitter_scale_ratio, jitter_ratio, max_seg.
TSTCC_WEAK_SCALE, TSTCC_JITTER, TSTCC_MAX_SEG = 1.1, 0.8, 8


def generic_views() -> list[SeriesViewConfig]:
    """Two views of the same recipe for the generic methods: window slicing of 50-100% of each series
    stretched back (Le Guennec et al. 2016), a per-channel gain N(1, 0.2) and jitter of sigma 0.1 (Um et
    al. 2017's scaling and jittering), on z-normalised series."""
    view = dict(crop_scale=(0.5, 1.0), scale=0.2, jitter=0.1)
    return [SeriesViewConfig(**view), SeriesViewConfig(**view)]


def tstcc_views() -> list[SeriesViewConfig]:
    """TS-TCC's views (Eldele et al. 2021, Sec. 4.1; code ``dataloader/augmentations.py`` ``DataTransform``):
    weak = its ``scaling`` (a factor N(2, 1.1) per time step), strong = segment permutation (up to 8
    pieces) then jitter (sigma 0.8)."""
    return [
        SeriesViewConfig(tstcc_scale=TSTCC_WEAK_SCALE),
        SeriesViewConfig(permute_segments=TSTCC_MAX_SEG, jitter=TSTCC_JITTER),
    ]


def tfc_views() -> list[SeriesViewConfig]:
    """TF-C's time-domain pair (Zhang et al. 2022, code ``augmentations.py`` ``DataTransform_TD``): the
    series itself and a jittered copy (sigma 0.8, the HAR config's ``jitter_ratio``)."""
    return [SeriesViewConfig(), SeriesViewConfig(jitter=TSTCC_JITTER)]


RECIPES = {
    "generic": lambda plan: generic_views(),
    "tstcc": lambda plan: tstcc_views(),
    "tfc": lambda plan: tfc_views(),
    # TS2Vec: the clean series, one random window of max_train_length steps when longer, shorter series
    # centred in their padding (ts2vec.py fit); the contextual crops are drawn by the method.
    "ts2vec": lambda plan: [SeriesViewConfig(max_length=int(plan.options.get("max_length", 3000)), centerize=True)],
    "frameproj": lambda plan: [SeriesViewConfig()],
    "clean": lambda plan: [SeriesViewConfig()],
}
DEFAULT_STYLE = {"pair": "generic", "asymmetric_pair": "generic", "single": "clean", "masked": "clean"}


def recipe_for(plan: ViewPlan) -> list[SeriesViewConfig]:
    if plan.kind not in DEFAULT_STYLE:
        raise UsageError(
            f"series data has no {plan.kind} views; methods with pair, asymmetric-pair or single views fit"
        )
    style = plan.style if plan.style in RECIPES else DEFAULT_STYLE[plan.kind]
    views = RECIPES[style](plan)
    if style == "generic" and plan.count == 1:
        views = views[:1]
    if len(views) != plan.count:
        raise UsageError(f"the series recipe {style!r} makes {len(views)} views but the method asks for {plan.count}")
    return views
