"""The science-module contract: registry, execution order, output validation, error capture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from alertlake import modules as registry
from alertlake.modules import ModuleError, ModuleParams, OutputMismatch, ScienceModule


def make(name: str, inputs: list[str], outputs: dict[str, str], fn=None) -> type[ScienceModule]:
    """A throw-away module class (not in the registry)."""

    def predict(self: ScienceModule, alerts: pd.DataFrame) -> pd.DataFrame:
        if fn is not None:
            return fn(alerts)
        return pd.DataFrame({c: np.zeros(len(alerts)) for c in outputs}, index=alerts.index)

    return type(
        f"{name.title()}Module",
        (ScienceModule,),
        {"name": name, "inputs": inputs, "outputs": outputs, "predict": predict},
    )


def test_registry_finds_the_five_modules() -> None:
    modules = registry.all_modules()
    assert set(modules) == {"xmatch", "features", "supernova", "anomaly", "sso"}
    for name, cls in modules.items():
        assert cls.name == name
        registry.check_declaration(cls)
    assert registry.get("supernova").depends_on() == ["features"]
    assert registry.get("xmatch").depends_on() == []
    with pytest.raises(KeyError, match="known modules: anomaly, features"):
        registry.get("nope")


def test_execution_order_puts_producers_first() -> None:
    order = [m.name for m in registry.execution_order(list(registry.all_modules().values()))]
    assert order.index("features") < order.index("supernova")
    assert order.index("features") < order.index("anomaly")
    assert sorted(order) == sorted(registry.all_modules())


def test_execution_order_errors() -> None:
    a = make("a", ["ra", "b_x"], {"a_x": "double"})
    b = make("b", ["a_x"], {"b_x": "double"})
    with pytest.raises(ModuleError, match="cycle: a, b"):
        registry.execution_order([a, b])
    c = make("c", ["ghost_column"], {"c_x": "double"})
    with pytest.raises(ModuleError, match="'c' reads column 'ghost_column'"):
        registry.execution_order([c])
    d = make("d", ["ra"], {"c_x": "double"})
    with pytest.raises(ModuleError, match="output of both"):
        registry.execution_order([make("c", ["ra"], {"c_x": "double"}), d])


def test_declaration_checks() -> None:
    with pytest.raises(ModuleError, match="must start with 'm_'"):
        registry.check_declaration(make("m", ["ra"], {"score": "double"}))
    with pytest.raises(ModuleError, match="reserved"):
        registry.check_declaration(make("m", ["ra"], {"m_version": "string"}))
    with pytest.raises(ModuleError, match="type 'float64'"):
        registry.check_declaration(make("m", ["ra"], {"m_x": "float64"}))


def test_validate_outputs_names_module_and_column() -> None:
    alerts = pd.DataFrame({"ra": [1.0, 2.0]}, index=[3, 4])
    m = make("m", ["ra"], {"m_x": "double", "m_label": "string", "m_n": "int"})()
    good = pd.DataFrame(
        {"m_x": [1.0, 2.0], "m_label": ["a", None], "m_n": np.array([1, 2], dtype=np.int32)}, index=alerts.index
    )
    registry.validate_outputs(m, alerts, good)
    with pytest.raises(OutputMismatch, match=r"module 'm': column 'm_n' is declared 'int' but has pandas dtype int64"):
        registry.validate_outputs(m, alerts, good.assign(m_n=[1, 2]))
    with pytest.raises(OutputMismatch, match="column 'm_label' is declared 'string' but holds mixed-integer values"):
        registry.validate_outputs(m, alerts, good.assign(m_label=pd.Series([1, "a"], index=alerts.index, dtype=object)))
    with pytest.raises(OutputMismatch, match=r"missing \['m_x'\]"):
        registry.validate_outputs(m, alerts, good.drop(columns="m_x"))
    with pytest.raises(OutputMismatch, match="index"):
        registry.validate_outputs(m, alerts, good.reset_index(drop=True))


def test_run_module_safely_nulls_a_failing_batch_and_goes_on() -> None:
    def boom(alerts: pd.DataFrame) -> pd.DataFrame:
        raise ZeroDivisionError("bad batch")

    m = make("m", ["ra"], {"m_x": "double", "m_flag": "boolean", "m_n": "int", "m_s": "string"}, boom)()
    alerts = pd.DataFrame({"ra": [1.0, 2.0, 3.0]}, index=[7, 8, 9])
    out, errors = registry.run_module_safely(m, alerts)
    assert out.index.equals(alerts.index) and list(out.columns) == list(m.outputs)
    assert out.isna().all().all()
    assert errors.name == "m_error" and errors.tolist() == ["ZeroDivisionError"] * 3
    # The null outputs convert to the declared Arrow types (what mapInPandas will do).
    table = pa.Table.from_pandas(out, schema=registry.output_schema([m]), preserve_index=False)
    assert table.column("m_n").type == pa.int32() and table.column("m_x").null_count == 3
    # A module returning the wrong shape is caught the same way.
    wrong = make("w", ["ra"], {"w_x": "double"}, lambda a: pd.DataFrame({"w_x": [1.0]}))()
    _, errors = registry.run_module_safely(wrong, alerts)
    assert set(errors) == {"OutputMismatch"}
    ok, errors = registry.run_module_safely(make("k", ["ra"], {"k_x": "double"})(), alerts)
    assert errors.isna().all() and (ok["k_x"] == 0).all()


def test_params_are_typed_and_hashed() -> None:
    class P(ModuleParams):
        radius: float = 1.5

    cls = make("p", ["ra"], {"p_x": "double"})
    cls.Params = P
    a, b = cls(), cls({"radius": 2.0})
    assert a.params.params_hash() == cls().params.params_hash() != b.params.params_hash()
    with pytest.raises(ValueError, match="radius"):
        cls({"radius": "wide"})
    with pytest.raises(ValueError, match="extra"):
        cls({"radus": 2.0})


def test_output_ddl_and_uris() -> None:
    sso = registry.get("sso")
    assert registry.output_ddl([sso]) == "sso_flag boolean, sso_distance_arcsec double, sso_name string"
    assert registry.model_uri("sso") == "models:/sso@champion"
    assert registry.model_uri("sso", 3) == "models:/sso/3"


def test_mlflow_unreachable_fails_fast_naming_the_url() -> None:
    with pytest.raises(registry.MlflowUnreachable, match=r"http://127\.0\.0\.1:9/"):
        registry.require_mlflow("http://127.0.0.1:9/", timeout=0.5)


def test_sample_alerts_without_shared_data_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout without ../shared/data gets an error naming the folder, not a KeyError deep in a module."""
    from alertlake.modules import _sample_canonical, sample_alerts

    monkeypatch.setenv("ALERTLAKE_SHARED_DATA", str(tmp_path))
    _sample_canonical.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match=r"no sample alert found in .*ALERTLAKE_SHARED_DATA"):
            sample_alerts()
    finally:
        _sample_canonical.cache_clear()


def test_saved_module_is_what_mlflow_loads(tmp_path: Path) -> None:
    """A saved pyfunc folder read without MLflow's loader (as the enrichment's Python workers do) gives the
    module MLflow would give: same class, registered params (not the defaults), artifact paths in the folder."""
    import mlflow.pyfunc

    artifact = tmp_path / "catalogue.txt"
    artifact.write_text("not read by sso")
    params = {"max_distance_arcsec": 2.5, "trust_association_without_distance": False}
    model_dir = tmp_path / "model"
    mlflow.pyfunc.save_model(
        str(model_dir),
        python_model=registry._build_pyfunc_wrapper("sso", params),
        artifacts={"catalogue": str(artifact)},
        pip_requirements=["mlflow"],
    )
    saved = registry.SavedModule.read(model_dir)
    assert saved.name == "sso" and saved.params == params
    assert set(saved.artifacts) == {"catalogue"}
    assert Path(saved.artifacts["catalogue"]).read_text() == "not read by sso"
    assert Path(saved.artifacts["catalogue"]).is_relative_to(model_dir)

    ours = saved.instantiate()
    theirs = mlflow.pyfunc.load_model(str(model_dir)).unwrap_python_model().module
    assert type(ours) is type(theirs) is registry.get("sso")
    assert ours.params == theirs.params and ours.params.model_dump() == params
    alerts = registry.sample_alerts()[list(ours.inputs)]
    pd.testing.assert_frame_equal(ours.predict(alerts), theirs.predict(alerts))


def test_saved_module_rejects_a_foreign_model(tmp_path: Path) -> None:
    import mlflow.pyfunc

    class Foreign(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
        def predict(self, context, model_input, params=None):
            return model_input

    mlflow.pyfunc.save_model(str(tmp_path / "m"), python_model=Foreign(), pip_requirements=["mlflow"])
    with pytest.raises(ModuleError, match="does not hold an AlertLake science module"):
        registry.SavedModule.read(tmp_path / "m")
