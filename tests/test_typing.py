"""Type checkers see the generated proxies: the committed source and mypy."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from scoped import scoped_session
from scoped.proxies import typing_source
from scoped.proxies._codegen import render_params
from scoped.proxies.typing_source import Ref, SourceError, check, main, resolve

ROOT = Path(__file__).resolve().parent.parent
TYPING = Path(__file__).resolve().parent / "typing"


def _series(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def _generated_series() -> tuple[int, ...]:
    header = typing_source.OUTPUT.read_text(encoding="utf-8").split("\n", 2)[1]
    match = re.search(r"sqlalchemy (\d+\.\d+)", header)
    assert match, f"no SQLAlchemy version in the header line {header!r}"
    return _series(match.group(1))


# The committed file describes the SQLAlchemy series it was written from;
# the 2.0 test run checks the run-time proxies, not this file.
same_sqlalchemy = pytest.mark.skipif(
    _series(sa.__version__) != _generated_series(),
    reason=f"scoped/proxies/_session_typing.py is written from another SQLAlchemy "
    f"series than the installed {sa.__version__}",
)
needs_311 = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="writing needs typing.get_overloads (3.11+)"
)
sqlalchemy_21 = pytest.mark.skipif(
    _series(sa.__version__) < (2, 1),
    reason=f"the typed proxies are written from SQLAlchemy 2.1; {sa.__version__} "
    "is installed",
)


@same_sqlalchemy
@needs_311
def test_committed_source_is_fresh() -> None:
    """The committed typed proxies are what the generator writes now."""
    problem = check()

    assert problem is None, problem


@needs_311
def test_check_reports_a_stale_file_with_a_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check fails with the command to run and a diff; --write fixes it."""
    target = tmp_path / "_session_typing.py"
    target.write_text("class SessionProxies: ...\n", encoding="utf-8")

    assert 1 == main(["--check", "--output", str(target)])
    err = capsys.readouterr().err
    assert "is stale" in err
    assert "run `make proxies`" in err
    assert "-class SessionProxies: ...\n" in err

    assert 0 == main(["--write", "--output", str(target)])
    assert 0 == main(["--check", "--output", str(target)])
    assert None is check(target)


def test_names_resolve_to_their_defining_module() -> None:
    """Re-imports, also under ``if TYPE_CHECKING:``, lead to the definition."""
    # session.py: "if typing.TYPE_CHECKING: from ..engine import Result".
    assert Ref("sqlalchemy.engine.result", "Result") == resolve(
        "sqlalchemy.orm.session", "Result"
    )
    assert Ref("sqlalchemy.orm.session", "Session") == resolve(
        "sqlalchemy.orm.session", "Session"
    )
    assert Ref("typing", "Optional") == resolve("sqlalchemy.orm.session", "Optional")
    assert Ref("sqlalchemy.util", None) == resolve("sqlalchemy.orm.session", "util")
    assert Ref("builtins", "object") == resolve("sqlalchemy.orm.session", "object")


def test_render_params_writes_annotations_and_keeps_positional_only_markers() -> None:
    """Annotated parameters get spaced defaults; "/" follows a leading self."""
    param = inspect.Parameter
    params = [
        param("self", param.POSITIONAL_OR_KEYWORD),
        param("key", param.POSITIONAL_ONLY, annotation="str"),
        param("value", param.POSITIONAL_OR_KEYWORD, default="None", annotation="int"),
        param("flag", param.KEYWORD_ONLY, default="True"),
        param("kw", param.VAR_KEYWORD, annotation="Any"),
    ]

    assert (
        "self, key: str, /, value: int = None, *, flag=True, **kw: Any"
        == render_params(params, str, annotation=str)
    )
    assert "self, key, /, value=None, *, flag=True, **kw" == render_params(params, str)


def test_an_unknown_name_is_a_clear_error() -> None:
    """A name bound nowhere is reported with the module it was used in."""
    with pytest.raises(SourceError, match=r"'NoSuchName', used in sqlalchemy\.orm"):
        resolve("sqlalchemy.orm.session", "NoSuchName")


@same_sqlalchemy
def test_typed_members_match_the_runtime_proxies() -> None:
    """Every generated member has its typed twin: kind, setter, signature, doc."""
    from scoped.proxies._session_typing import SessionProxies

    runtime = type(scoped_session(sa.orm.sessionmaker(sa.create_engine("sqlite://"))))
    _, members = typing_source.session_members()

    def clean(doc: str | None) -> list[str]:
        return [line.rstrip() for line in inspect.cleandoc(doc or "").splitlines()]

    assert len(members) > 50
    for member in members:
        generated = inspect.getattr_static(runtime, member.name)
        typed = inspect.getattr_static(SessionProxies, member.name)
        # A typed property stands for a property or for the compiled
        # descriptor of scoped._speedups; both have fset and __doc__.
        assert isinstance(typed, property) or type(generated) is type(typed), (
            member.name
        )
        if isinstance(typed, property):
            assert hasattr(type(generated), "__set__"), member.name
            assert (generated.fset is None) == (typed.fset is None), member.name
            assert clean(generated.__doc__) == clean(typed.__doc__), member.name
            continue
        generated_fn = getattr(runtime, member.name)
        typed_fn = getattr(SessionProxies, member.name)
        assert inspect.signature(generated_fn) == inspect.signature(typed_fn), (
            member.name
        )
        assert clean(generated_fn.__doc__) == clean(typed_fn.__doc__), member.name


def _mypy(module: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--no-error-summary",
            "--hide-error-context",
            str(module.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _canonical(revealed: str) -> str:
    """``Union[m.User, None]`` and ``m.User | None`` both read ``User | None``."""
    text = re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", revealed)
    text = re.sub(r"^Optional\[(.*)\]$", r"\1 | None", text)
    return re.sub(r"^Union\[(.*), None\]$", r"\1 | None", text)


@sqlalchemy_21
def test_mypy_accepts_a_user_module_and_infers_session_types() -> None:
    """mypy --strict passes a user module and infers what SQLAlchemy's own would."""
    result = _mypy(TYPING / "user_module.py")

    revealed = re.findall(r'note: Revealed type is "(.*)"', result.stdout)
    assert [
        "User | None",  # db.get(User, 1)
        "User",  # db.get_one(User, 1)
        "Sequence[User]",  # db.execute(select(User)).scalars().all()
        "str | None",  # db.scalars(select(User.name)).first()
        "User | None",  # db.query(User).first()
        "Session",  # db()
        "Session | None",  # scoped_session.object_session(...)
        "MySession",  # scoped_session[MySession](...)()
        "MySession",  # ScopedSession[MySession] annotation
        "str",  # a MySession method on the returned session
    ] == [_canonical(t) for t in revealed], result.stdout + result.stderr
    assert 0 == result.returncode, result.stdout + result.stderr
    assert " error: " not in result.stdout


@sqlalchemy_21
def test_mypy_accepts_proxies_of_another_class() -> None:
    """A class other than a SQLAlchemy session gets members typed Any, not
    Session's (whose get() would reject get("/health")); async alike."""
    result = _mypy(TYPING / "other_class.py")

    revealed = re.findall(r'note: Revealed type is "(.*)"', result.stdout)
    assert [
        "AnyScopedSession[HttpClient]",  # scoped_session(HttpClient)
        "HttpClient",  # http()
        "Any",  # http.get("/health")
        "dict[str, int]",  # the registry's own API stays typed
        "AnyAsyncScopedSession[Client]",  # async_scoped_session(Client, ...)
        "Any",  # await clients.fetch("/health")
    ] == [_canonical(t) for t in revealed], result.stdout + result.stderr
    assert 0 == result.returncode, result.stdout + result.stderr


@sqlalchemy_21
def test_mypy_rejects_wrong_calls_through_the_proxies() -> None:
    """Wrong arguments, types and names are reported on exactly the marked lines."""
    module = TYPING / "wrong_calls.py"
    expected = {
        number: code
        for number, line in enumerate(module.read_text().splitlines(), 1)
        for code in re.findall(r"# error: ([\w-]+)$", line)
    }

    result = _mypy(module)

    errors = re.findall(r":(\d+): error: .*\[([\w-]+)\]$", result.stdout, re.M)
    reported = {int(number): code for number, code in errors}
    assert expected == reported, result.stdout + result.stderr
    assert 1 == result.returncode
    assert 'Missing positional argument "ident" in call to "get"' in result.stdout
