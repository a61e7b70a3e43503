"""The cross-match equals astropy's nearest-neighbour match within the radius, on real alerts and random skies."""

from __future__ import annotations

from collections.abc import Callable

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord

from alertlake import modules as registry
from alertlake.surveys.samples import shared_data_dir
from modules.xmatch.module import CATALOGUES, CatalogueIndex, XmatchModule, healpix_depth


def astropy_match(
    ra: np.ndarray, dec: np.ndarray, cat_ra: np.ndarray, cat_dec: np.ndarray, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: astropy's nearest neighbour, kept only within the radius (-1 / NaN otherwise)."""
    idx, sep, _ = SkyCoord(ra * u.deg, dec * u.deg).match_to_catalog_sky(SkyCoord(cat_ra * u.deg, cat_dec * u.deg))
    sep_arcsec = sep.to_value(u.arcsec)
    inside = sep_arcsec <= radius_arcsec
    return np.where(inside, idx, -1), np.where(inside, sep_arcsec, np.nan)


def assert_same_match(
    index: CatalogueIndex, ra: np.ndarray, dec: np.ndarray, radius: float, cat_ra: np.ndarray, cat_dec: np.ndarray
) -> int:
    """Our match equals astropy's: same hits, same separations, same source up to exact distance ties."""
    best, sep = index.match(ra, dec, radius)
    ref_idx, ref_sep = astropy_match(ra, dec, cat_ra, cat_dec, radius)
    np.testing.assert_array_equal(best >= 0, ref_idx >= 0)
    hit = best >= 0
    np.testing.assert_allclose(sep[hit], ref_sep[hit], rtol=0, atol=1e-6)
    ours = index.row[best[hit]]
    differs = ours != ref_idx[hit]
    if differs.any():  # only allowed between sources at the same position
        np.testing.assert_allclose(cat_ra[ours[differs]], cat_ra[ref_idx[hit][differs]], atol=1e-9)
        np.testing.assert_allclose(cat_dec[ours[differs]], cat_dec[ref_idx[hit][differs]], atol=1e-9)
    return int(hit.sum())


@pytest.mark.parametrize("radius", [1.5, 30.0, 600.0])
def test_random_sky_matches_astropy(radius: float) -> None:
    rng = np.random.default_rng(7)
    n_cat = 50_000
    cat_ra = rng.uniform(0, 360, n_cat)
    cat_dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_cat)))
    # Crowd the poles, the RA wrap and the HEALPix base-cell corners, where neighbour lookups are hardest.
    extra_ra = np.concatenate([rng.uniform(0, 360, 2000), rng.uniform(359.9, 360, 500) % 360, np.full(200, 45.0)])
    extra_dec = np.concatenate(
        [rng.uniform(89.5, 90, 1000), rng.uniform(-90, -89.5, 1000), rng.uniform(-1, 1, 500), np.full(200, 41.8103)]
    )
    cat_ra, cat_dec = np.concatenate([cat_ra, extra_ra]), np.concatenate([cat_dec, extra_dec])
    cat_ra[:100], cat_dec[:100] = cat_ra[100:200], cat_dec[100:200]  # exact duplicates: ties
    index = CatalogueIndex.build(cat_ra, cat_dec, {}, healpix_depth(radius))
    # Queries: near catalogue sources (offsets up to 2 radii) and anywhere.
    near = rng.integers(0, len(cat_ra), 3000)
    offset = radius / 3600 * 2
    q_ra = np.concatenate([(cat_ra[near] + rng.uniform(-offset, offset, 3000)) % 360, rng.uniform(0, 360, 3000)])
    q_dec = np.concatenate(
        [
            np.clip(cat_dec[near] + rng.uniform(-offset, offset, 3000), -90, 90),
            np.degrees(np.arcsin(rng.uniform(-1, 1, 3000))),
        ]
    )
    hits = assert_same_match(index, q_ra, q_dec, radius, cat_ra, cat_dec)
    assert hits > 500  # the comparison covers many real matches, not only misses


def test_real_alerts_match_astropy_on_real_catalogues(
    sample: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]
) -> None:
    module = prepared("xmatch")
    assert isinstance(module, XmatchModule)
    ra, dec = sample["ra"].to_numpy(), sample["dec"].to_numpy()
    total = 0
    for key, catalogue in CATALOGUES.items():
        table = pq.read_table(shared_data_dir() / catalogue.file, columns=[catalogue.ra, catalogue.dec])
        cat_ra, cat_dec = table.column(0).to_numpy(), table.column(1).to_numpy()
        total += assert_same_match(module.indexes[key], ra, dec, module.radius[key], cat_ra, cat_dec)
    assert total >= 50  # the sample has dozens of real counterparts (VSX, GCVS, SPICY, Mangrove)


def test_predict_outputs_and_known_counterparts(
    sample: pd.DataFrame, prepared: Callable[[str], registry.ScienceModule]
) -> None:
    module = prepared("xmatch")
    out = module.predict(sample)
    registry.validate_outputs(module, sample, out)
    hits = out["xmatch_vsx_type"].notna()
    assert hits.sum() > 20
    assert out.loc[hits, "xmatch_vsx_sep_arcsec"].le(1.5).all()
    assert out.loc[~hits, "xmatch_vsx_sep_arcsec"].isna().all()
    assert not out["xmatch_vsx_type"].dropna().str.endswith(" ").any()  # catalogue padding stripped
    assert out["xmatch_mangrove_name"].notna().sum() == out["xmatch_mangrove_lum_dist_mpc"].notna().sum()


def test_missing_and_invalid_positions_give_nulls(prepared: Callable[[str], registry.ScienceModule]) -> None:
    module = prepared("xmatch")
    alerts = pd.DataFrame({"ra": [np.nan, 10.0, 400.0], "dec": [0.0, np.nan, 95.0]}, index=[5, 6, 7])
    out = module.predict(alerts)
    assert out.index.tolist() == [5, 6, 7]
    assert out.isna().all().all()
