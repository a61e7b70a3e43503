"""Positional cross-match of each alert with offline catalogues, through a HEALPix index built at registration.

Catalogues (from the shared data folder, see its README for origin and licence): AAVSO VSX and GCVS variable
stars, SPICY young stellar objects, and Mangrove galaxies. For each, the nearest catalogue source within the
catalogue's radius gives a label and the separation; no source within the radius gives nulls. "Nearest" is
the same as astropy's ``SkyCoord.match_to_catalog_sky`` (angles by the Vincenty formula astropy uses), with
ties between sources at exactly the same distance going to the first in the catalogue file.

How it is fast: at registration each catalogue is sorted by its HEALPix cell (nested scheme) at a depth whose
cells are at least eight times the match radius, and stored as a parquet artifact. An alert's candidates are
then the sources in its cell and the 8 neighbouring cells, a range lookup (``searchsorted``) in the sorted
cells: the whole batch is matched with numpy, no per-alert Python.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from alertlake.modules import BuildResult, ModuleError, ModuleParams, ScienceModule


@dataclass(frozen=True)
class Catalogue:
    """One catalogue: its file under the shared data folder, position columns and the columns reported."""

    key: str
    file: str
    ra: str
    dec: str
    #: output suffix -> (source column or columns tried in order, output type)
    fields: dict[str, tuple[tuple[str, ...], str]]


CATALOGUES: dict[str, Catalogue] = {
    c.key: c
    for c in (
        Catalogue("vsx", "catalogs/vsx.parquet", "RAJ2000", "DEJ2000", {"type": (("VType",), "string")}),
        Catalogue("gcvs", "catalogs/gcvs.parquet", "ra", "dec", {"type": (("VarType",), "string")}),
        Catalogue("spicy", "catalogs/spicy.parquet", "RAdeg", "DEdeg", {"class": (("class",), "string")}),
        Catalogue(
            "mangrove",
            "catalogs/mangrove_filtered.parquet",
            "ra",
            "dec",
            {"name": (("HyperLEDA_name", "2MASS_name"), "string"), "lum_dist_mpc": (("lum_dist",), "double")},
        ),
    )
}

ARCSEC = math.pi / 180.0 / 3600.0


class XmatchParams(ModuleParams):
    """Match radius per catalogue, in arcseconds."""

    radius_arcsec: dict[str, float] = Field(
        default_factory=lambda: {"vsx": 1.5, "gcvs": 1.5, "spicy": 1.2, "mangrove": 30.0},
        description="Stars: positional accuracy of ZTF/Rubin plus catalogue epochs; galaxies: host offsets.",
    )


def healpix_depth(radius_arcsec: float) -> int:
    """The deepest HEALPix depth whose mean cell size is at least 8 x ``radius_arcsec`` (at most 16).

    Eight times is a wide margin: the 3 x 3 cells around an alert then contain the whole match circle even
    where HEALPix cells are most elongated, which the tests check against astropy over the whole sky.
    """
    for depth in range(16, -1, -1):
        cell = math.sqrt(4 * math.pi / (12 * 4**depth)) / ARCSEC
        if cell >= 8 * radius_arcsec:
            return depth
    return 0


def healpix_cells(ra_deg: np.ndarray, dec_deg: np.ndarray, depth: int) -> np.ndarray:
    """Nested HEALPix cell of each position at ``depth`` (uint64)."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix import nested

    return np.asarray(
        nested.lonlat_to_healpix(Longitude(ra_deg, u.deg), Latitude(dec_deg, u.deg), depth, num_threads=1),
        dtype=np.uint64,
    )


def angular_separation(ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    """Angle between positions (radians in, radians out), by the Vincenty formula as astropy computes it."""
    sdlon, cdlon = np.sin(ra2 - ra1), np.cos(ra2 - ra1)
    slat1, slat2, clat1, clat2 = np.sin(dec1), np.sin(dec2), np.cos(dec1), np.cos(dec2)
    num1 = clat2 * sdlon
    num2 = clat1 * slat2 - slat1 * clat2 * cdlon
    return np.arctan2(np.hypot(num1, num2), slat1 * slat2 + clat1 * clat2 * cdlon)


@dataclass
class CatalogueIndex:
    """A catalogue sorted by HEALPix cell: cells, positions (radians) and the reported columns, row-aligned."""

    depth: int
    cells: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    row: np.ndarray  # position in the original catalogue file: the tie-break
    fields: dict[str, np.ndarray]

    @classmethod
    def build(
        cls, ra_deg: np.ndarray, dec_deg: np.ndarray, fields: dict[str, np.ndarray], depth: int
    ) -> CatalogueIndex:
        """Index positions (degrees) and their field values at ``depth``."""
        cells = healpix_cells(ra_deg, dec_deg, depth)
        row = np.arange(len(cells), dtype=np.int64)
        order = np.lexsort((row, cells))
        return cls(
            depth,
            cells[order],
            np.radians(ra_deg[order]),
            np.radians(dec_deg[order]),
            row[order],
            {k: v[order] for k, v in fields.items()},
        )

    def write(self, path: Path) -> None:
        """Save as parquet (depth in the file's metadata)."""
        table = pa.table({"cell": self.cells, "ra": self.ra, "dec": self.dec, "row": self.row, **self.fields})
        table = table.replace_schema_metadata({"healpix_depth": str(self.depth)})
        pq.write_table(table, path, compression="zstd")

    @classmethod
    def read(cls, path: Path) -> CatalogueIndex:
        """Load an index written by :meth:`write`."""
        table = pq.read_table(path)
        depth = int((table.schema.metadata or {})[b"healpix_depth"])
        columns = {name: table.column(name).to_numpy() for name in table.column_names}
        fields = {k: v for k, v in columns.items() if k not in ("cell", "ra", "dec", "row")}
        return cls(depth, columns["cell"].astype(np.uint64), columns["ra"], columns["dec"], columns["row"], fields)

    def match(self, ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
        """Nearest source within ``radius_arcsec`` of each position: (index into this index or -1, separation
        in arcsec or NaN)."""
        from cdshealpix import nested

        n = len(ra_deg)
        best = np.full(n, -1, dtype=np.int64)
        best_sep = np.full(n, np.nan)
        valid = np.isfinite(ra_deg) & np.isfinite(dec_deg) & (np.abs(dec_deg) <= 90)
        if not valid.any() or len(self.cells) == 0:
            return best, best_sep
        alerts = np.flatnonzero(valid)
        around = nested.neighbours(
            healpix_cells(ra_deg[alerts], dec_deg[alerts], self.depth), self.depth, num_threads=1
        )
        exists = around < np.uint64(12 * 4**self.depth)  # missing neighbours (8 sky corners) come back as -1
        cells = around[exists]
        owner = np.broadcast_to(alerts[:, None], around.shape)[exists]
        lo = np.searchsorted(self.cells, cells, side="left")
        hi = np.searchsorted(self.cells, cells, side="right")
        counts = hi - lo
        total = int(counts.sum())
        if total == 0:
            return best, best_sep
        pair_alert = np.repeat(owner, counts)
        # Index of each candidate: its range start plus its rank within the range.
        first_of_range = np.repeat(np.cumsum(counts) - counts, counts)
        pair_source = np.repeat(lo, counts) + (np.arange(total) - first_of_range)
        ra = np.radians(ra_deg[pair_alert])
        dec = np.radians(dec_deg[pair_alert])
        sep = angular_separation(self.ra[pair_source], self.dec[pair_source], ra, dec) / ARCSEC
        keep = sep <= radius_arcsec
        pair_alert, pair_source, sep = pair_alert[keep], pair_source[keep], sep[keep]
        if len(sep) == 0:
            return best, best_sep
        order = np.lexsort((self.row[pair_source], sep, pair_alert))
        pair_alert, pair_source, sep = pair_alert[order], pair_source[order], sep[order]
        first = np.ones(len(pair_alert), dtype=bool)
        first[1:] = pair_alert[1:] != pair_alert[:-1]
        best[pair_alert[first]] = pair_source[first]
        best_sep[pair_alert[first]] = sep[first]
        return best, best_sep


def _clean_strings(values: pd.Series) -> np.ndarray:
    cleaned = values.astype("string").str.strip()
    cleaned = cleaned.mask(cleaned.isin(["", "None", "nan"]))
    return np.asarray(cleaned.astype(object).where(cleaned.notna(), None), dtype=object)


def _read_catalogue(root: Path, catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    path = root / catalogue.file
    if not path.exists():
        raise ModuleError(
            f"xmatch: catalogue {catalogue.key} not found at {path}; set ALERTLAKE_SHARED_DATA to the "
            "shared data folder"
        )
    sources = {c for cols, _ in catalogue.fields.values() for c in cols}
    frame = pq.read_table(path, columns=[catalogue.ra, catalogue.dec, *sorted(sources)]).to_pandas()
    fields: dict[str, np.ndarray] = {}
    for suffix, (cols, typ) in catalogue.fields.items():
        if typ == "string":
            value = pd.Series(_clean_strings(frame[cols[0]]), dtype=object)
            for fallback in cols[1:]:
                value = value.where(value.notna(), pd.Series(_clean_strings(frame[fallback]), dtype=object))
            fields[suffix] = value.to_numpy(dtype=object)
        else:
            fields[suffix] = frame[cols[0]].to_numpy(dtype=float)
    return frame[catalogue.ra].to_numpy(dtype=float), frame[catalogue.dec].to_numpy(dtype=float), fields


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class XmatchModule(ScienceModule):
    """Nearest VSX / GCVS / SPICY / Mangrove source within a radius: label and separation."""

    name: ClassVar[str] = "xmatch"
    version_note: ClassVar[str] = "HEALPix-indexed nearest-source match to VSX, GCVS, SPICY and Mangrove"
    inputs: ClassVar[list[str]] = ["ra", "dec"]
    outputs: ClassVar[dict[str, str]] = {
        f"xmatch_{key}_{suffix}": typ
        for key, cat in CATALOGUES.items()
        for suffix, typ in [*((s, t) for s, (_, t) in cat.fields.items()), ("sep_arcsec", "double")]
    }
    Params: ClassVar[type[ModuleParams]] = XmatchParams

    def __init__(self, params: ModuleParams | dict[str, object] | None = None) -> None:
        super().__init__(params)
        assert isinstance(self.params, XmatchParams)
        self.radius = {k: float(self.params.radius_arcsec[k]) for k in CATALOGUES}
        self.indexes: dict[str, CatalogueIndex] = {}

    def build(self, workdir: Path) -> BuildResult:
        """Index every catalogue of the shared data folder into ``workdir/<key>.parquet``."""
        from alertlake.surveys.samples import shared_data_dir

        root = shared_data_dir()
        result = BuildResult()
        for key, catalogue in CATALOGUES.items():
            ra, dec, fields = _read_catalogue(root, catalogue)
            index = CatalogueIndex.build(ra, dec, fields, healpix_depth(self.radius[key]))
            path = workdir / f"{key}.parquet"
            index.write(path)
            result.artifacts[key] = path
            result.metrics[f"{key}_sources"] = float(len(ra))
            result.params[f"{key}_healpix_depth"] = index.depth
            result.tags[f"alertlake.data.{key}"] = json.dumps(
                {"path": catalogue.file, "sha256": _sha256(root / catalogue.file)}
            )
        return result

    def load(self, artifacts: dict[str, Path]) -> None:  # type: ignore[override]
        """Read the catalogue indexes."""
        missing = [k for k in CATALOGUES if k not in artifacts]
        if missing:
            raise ModuleError(f"xmatch: artifacts missing for catalogues {missing}")
        self.indexes = {k: CatalogueIndex.read(Path(artifacts[k])) for k in CATALOGUES}

    def predict(self, alerts: pd.DataFrame) -> pd.DataFrame:
        """Label and separation of the nearest source of each catalogue within its radius."""
        if not self.indexes:
            raise ModuleError("xmatch: predict called before load (no catalogue index)")
        ra = alerts["ra"].to_numpy(dtype=float, na_value=np.nan)
        dec = alerts["dec"].to_numpy(dtype=float, na_value=np.nan)
        out: dict[str, np.ndarray] = {}
        for key, index in self.indexes.items():
            best, sep = index.match(ra, dec, self.radius[key])
            found = best >= 0
            for suffix, (_, typ) in CATALOGUES[key].fields.items():
                values = index.fields[suffix]
                if typ == "string":
                    column = np.full(len(best), None, dtype=object)
                else:
                    column = np.full(len(best), np.nan)
                column[found] = values[best[found]]
                out[f"xmatch_{key}_{suffix}"] = column
            out[f"xmatch_{key}_sep_arcsec"] = sep
        return pd.DataFrame(out, index=alerts.index)[list(self.outputs)]
