"""Query AlertLake from Python with the ``trino`` DB-API client and pandas.

Run it against the local stack (``make services-up``) or any AlertLake Trino:

    TRINO_URL=https://127.0.0.1:8443 TRINO_USER=scientist TRINO_PASSWORD=... \
    TRINO_CA_FILE=.state/trino/tls/trino.pem python docs/examples/query_with_trino.py

It needs only ``pip install trino pandas`` (plus ``cdshealpix astropy`` for the indexed cone search; without
them it falls back to a plain distance cut, which is exact but scans more data). With the password of user
``scientist`` it reads silver, gold, quality and the views; it cannot write anything.
"""

from __future__ import annotations

import math
import os
from urllib.parse import urlparse

import pandas as pd
import requests
import trino
from trino.auth import BasicAuthentication


def connect() -> trino.dbapi.Connection:
    """A DB-API connection to catalog ``lake`` from TRINO_URL / TRINO_USER / TRINO_PASSWORD / TRINO_CA_FILE."""
    url = urlparse(os.environ.get("TRINO_URL", "https://127.0.0.1:8443"))
    user = os.environ.get("TRINO_USER", "scientist")
    password = os.environ.get("TRINO_PASSWORD")
    # The local stack's certificate is self-signed: trust that file; a real deployment has a CA-signed one.
    ca_file = os.environ.get("TRINO_CA_FILE", ".state/trino/tls/trino.pem")
    session = requests.Session()
    session.verify = ca_file if os.path.exists(ca_file) else True
    session.trust_env = False  # else REQUESTS_CA_BUNDLE, when set, replaces the certificate above
    return trino.dbapi.connect(
        host=url.hostname or "127.0.0.1",
        port=url.port or (443 if url.scheme == "https" else 80),
        http_scheme=url.scheme or "https",
        user=user,
        auth=BasicAuthentication(user, password) if password else None,
        http_session=session,
        catalog="lake",
    )


def frame(conn: trino.dbapi.Connection, sql: str, params: list[object] | None = None) -> pd.DataFrame:
    """Run ``sql`` (with ``?`` placeholders bound to ``params``) and return the result as a DataFrame."""
    cur = conn.cursor()
    cur.execute(sql, params)
    rows = cur.fetchall()
    return pd.DataFrame(rows, columns=[d[0] for d in cur.description])


def cone_sql(ra: float, dec: float, radius_arcsec: float, indexed: bool) -> str:
    """Alerts within a radius: HEALPix-pruned with AlertLake's helper when silver is indexed and it is importable."""
    try:
        if not indexed:
            raise ImportError("silver has no healpix column")
        from alertlake.serving import cone_search_sql

        return cone_search_sql(ra, dec, radius_arcsec, columns=["object_id", "alert_id", "ra", "dec", "mjd", "mag"])
    except ImportError:
        r = math.radians
        distance = (
            f"2 * asin(sqrt(power(sin((radians(dec) - {r(dec)}) / 2), 2) + cos(radians(dec)) * {math.cos(r(dec))}"
            f" * power(sin((radians(ra) - {r(ra)}) / 2), 2))) * {180 / math.pi * 3600}"
        )
        return (
            f"SELECT object_id, alert_id, ra, dec, mjd, mag, {distance} AS distance_arcsec FROM lake.silver.alerts "
            f"WHERE {distance} <= {radius_arcsec} ORDER BY distance_arcsec"
        )


def main() -> None:
    """Nights in the lake, the newest night's classes, one object's light curve and a cone around it."""
    conn = connect()

    nights = frame(conn, "SELECT * FROM lake.views.night_summary ORDER BY night DESC")
    print("nights in the lake:\n", nights.head(), "\n")
    if nights.empty:
        print("silver is empty: run `make demo` first")
        return
    night = str(nights.night.iloc[0])

    # Bound parameters (?) keep user input out of the SQL text.
    alerts = frame(
        conn,
        "SELECT object_id, alert_id, mjd, band, mag, supernova_score, anomaly_score, sso_flag "
        "FROM lake.views.night_alerts WHERE night = ? AND quality_pass ORDER BY supernova_score DESC LIMIT 10",
        [night],
    )
    print(f"best supernova candidates of {night}:\n", alerts, "\n")
    if alerts.empty:
        return

    object_id = str(alerts.object_id.iloc[0])
    curve = frame(conn, "SELECT * FROM lake.views.light_curves WHERE object_id = ? ORDER BY mjd", [object_id])
    print(f"light curve of {object_id}: {len(curve)} points")
    print(curve.pivot_table(index="band", columns="kind", values="mjd", aggfunc="count"), "\n")

    where = frame(conn, "SELECT ra, dec FROM lake.silver.alerts WHERE object_id = ? LIMIT 1", [object_id])
    indexed = not frame(
        conn,
        "SELECT column_name FROM lake.information_schema.columns "
        "WHERE table_schema = 'silver' AND table_name = 'alerts' AND column_name = 'healpix'",
    ).empty
    neighbours = frame(conn, cone_sql(float(where.ra[0]), float(where.dec[0]), 60.0, indexed))
    print(f"alerts within 1 arcmin of {object_id}:\n", neighbours)


if __name__ == "__main__":
    main()
