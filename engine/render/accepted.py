"""The templates a long-running process sends from: each one the last version that rendered.

The daemon renders lazily from files, so a template saved while it runs is what the next send
reads. :class:`AcceptedTemplates` keeps a copy of ``templates/`` instead and moves it forward
one reload at a time: every template whose files changed (all of them when a shared layout or
partial changed) is rendered in each locale against its ``sample.yaml``, under the same
budget as a send (:mod:`engine.workspace.render_budget`), before the copy replaces the one in
use. A template that fails keeps its last good version, and :class:`TemplateReview` says why
in one line per template; the others move on. The renderer is pointed at :attr:`directory`.

When a change to a shared file is what breaks a template, restoring that template's own
folder is not enough (it would meet the new layout): the shared files keep their last good
version too, and the templates whose own folders changed are checked again against them.
So every template in the copy is always a version that rendered, as a whole.

A template with no good version yet (new, or failing at the first review) stays as it is:
its sends fail with ``render_error``, as they would without this, and the review says so.

Copies: regular files up to the renderer's 1 MiB limit (a larger one could not be rendered
anyway), symlinks as links; two generations are kept, the one in use and the one before
(a render that started just before a swap still finds its files), in a temporary folder
removed when this object goes away.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from engine.render.checks import is_marketing
from engine.render.context import load_sample, sample_context
from engine.render.errors import RenderError
from engine.render.renderer import MAX_TEMPLATE_BYTES, Renderer
from engine.settings import Settings
from engine.workspace.models import Campaign
from engine.workspace.schedules import Schedules

SHARED = "_shared"  # the fingerprint key of everything outside a template's own folder


class TemplateWorkspace(Protocol):
    """What a review needs from a loaded workspace."""

    @property
    def templates_dir(self) -> Path: ...

    @property
    def schedules(self) -> Schedules: ...

    def campaigns_using(self, template: str) -> list[Campaign]: ...


@dataclass
class TemplateReview:
    """What a review decided: the folder to render from now, and one line per template it held back."""

    directory: Path
    checked: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # template → why its last good version stays
    failing: dict[str, str] = field(default_factory=dict)  # template → why it fails (no good version)
    shared: str | None = None  # why the shared layouts and partials keep their last good version

    def lines(self) -> list[str]:
        """One line per template held back or failing, for the daemon's log and console."""
        lines = [f"kept the last good layouts and partials: {self.shared}"] if self.shared else []
        lines += [
            f"kept the last good version of template {name!r}: {why}" for name, why in self.kept.items()
        ]
        lines += [
            f"template {name!r} has no version that renders (its sends fail until it is fixed): {why}"
            for name, why in self.failing.items()
        ]
        return lines


class AcceptedTemplates:
    """A copy of ``templates/`` moved forward one review at a time (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._root = Path(tempfile.mkdtemp(prefix="tidings-templates-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._root, True)
        self._generation = 0
        self.directory: Path | None = None
        self._accepted: dict[str, str] = {}  # fingerprints of the copy in use
        self._good: set[str] = set()  # templates in the copy in use that rendered

    def review(self, workspace: TemplateWorkspace) -> TemplateReview:
        """Render what changed in ``workspace``'s templates; the new copy to use, with what was held back."""
        source = workspace.templates_dir
        fresh = _fingerprints(source)
        names = sorted(name for name in fresh if name != SHARED)
        previous = self.directory
        own_changed = [name for name in names if fresh[name] != self._accepted.get(name)]
        shared_changed = previous is None or fresh[SHARED] != self._accepted.get(SHARED)

        candidate = self._next_directory()
        _copy_tree(source, candidate)
        checked = names if shared_changed else own_changed
        review = TemplateReview(candidate, checked=list(checked))
        failures = self._failures(candidate, checked, workspace, source)
        kept = {name: why for name, why in failures.items() if name in self._good}
        if previous is not None and kept:
            for name in kept:
                _replace(candidate / name, previous / name)
            if shared_changed:
                # The last good versions meet the new layouts and partials: do they still render?
                still = self._failures(candidate, sorted(kept), workspace, source)
                if still:
                    name, why = next(iter(still.items()))
                    review.shared = f"{why} (the last good version of template {name!r} fails with them)"
                    _restore_shared(candidate, previous)
                    fresh[SHARED] = self._accepted[SHARED]
                    # Every template is now its last good version, but for its own edits: try those again.
                    for name in own_changed:
                        _replace(candidate / name, source / name)
                    failures = self._failures(candidate, own_changed, workspace, source)
                    kept = {name: why for name, why in failures.items() if name in self._good}
                    for name in kept:
                        _replace(candidate / name, previous / name)
        review.kept = kept
        review.failing = {name: why for name, why in failures.items() if name not in kept}
        self._accept(candidate, fresh, review, names)
        return review

    def close(self) -> None:
        """Remove every copy (the folder is also removed when this object is garbage collected)."""
        self._finalizer()

    # -- internals ------------------------------------------------------------------------------

    def _next_directory(self) -> Path:
        self._generation += 1
        return self._root / f"generation-{self._generation}"

    def _failures(
        self, directory: Path, names: list[str], workspace: TemplateWorkspace, source: Path
    ) -> dict[str, str]:
        # the copy has no schedules/ beside it: the labels are the workspace's own
        renderer = Renderer(self.settings, directory, labels=workspace.schedules.labels)
        found: dict[str, str] = {}
        for name in names:
            categories = [str(campaign.category) for campaign in workspace.campaigns_using(name)]
            try:
                marketing = is_marketing(renderer, name, categories)
                _render_samples(renderer, name, self.settings, marketing=marketing)
            except RenderError as exc:
                found[name] = _as_source(exc, directory, source)
        return found

    def _accept(
        self, candidate: Path, fresh: dict[str, str], review: TemplateReview, names: list[str]
    ) -> None:
        previous = self.directory
        # What the copy now holds: a kept template is its old version, so a later save of it is a change.
        self._accepted = fresh | {name: self._accepted.get(name, "") for name in review.kept}
        self._good = {n for n in names if n not in review.failing}
        self.directory = candidate
        if previous is not None:  # keep the one before (renders in flight); drop anything older
            for old in self._root.iterdir():
                if old not in (previous, candidate):
                    shutil.rmtree(old, ignore_errors=True)


def _render_samples(renderer: Renderer, template: str, settings: Settings, *, marketing: bool) -> None:
    """Render each locale of ``template`` with its sample as ``validate`` does: RenderError if one fails."""
    sample = load_sample(renderer.templates_dir / template / "sample.yaml", settings)
    for _path, locale in renderer.locale_files(template):
        context = sample_context(sample, settings)
        if renderer.kind(template) == "email":
            renderer.render_email(template, context, locale=locale, marketing=marketing)
        else:
            renderer.render_post(template, context, locale=locale)


def _as_source(error: RenderError, directory: Path, source: Path) -> str:
    """The error as one line about the author's file (the copy's path mapped back to ``templates/``)."""
    text = str(error)
    return text.replace(str(directory), str(source)) if error.path is not None else text


def _fingerprints(source: Path) -> dict[str, str]:
    """A hash per template folder, and one (:data:`SHARED`) for everything else under ``source``."""
    digests: dict[str, hashlib._Hash] = {}
    if not source.is_dir():
        return {SHARED: ""}
    for path in sorted(source.rglob("*")):
        if not path.is_file() and not path.is_symlink():
            continue
        relative = path.relative_to(source)
        top = relative.parts[0]
        key = top if len(relative.parts) > 1 and not top.startswith(("_", ".")) else SHARED
        digest = digests.setdefault(key, hashlib.sha256())
        digest.update(str(relative).encode("utf-8", "surrogateescape") + b"\0")
        digest.update(_content_key(path))
    result = {key: digest.hexdigest() for key, digest in digests.items()}
    result.setdefault(SHARED, "")
    return result


def _content_key(path: Path) -> bytes:
    try:
        if path.is_symlink():
            return b"link:" + str(path.readlink()).encode("utf-8", "surrogateescape")
        size = path.stat().st_size
        if size > MAX_TEMPLATE_BYTES:
            return f"large:{size}:{path.stat().st_mtime_ns}".encode()
        return path.read_bytes()
    except OSError:
        return b"unreadable"


def _copy_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True, ignore=_too_large, dirs_exist_ok=True)


def _too_large(folder: str, names: list[str]) -> list[str]:
    skipped = []
    for name in names:
        path = Path(folder) / name
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size > MAX_TEMPLATE_BYTES:
                skipped.append(name)
        except OSError:
            skipped.append(name)
    return skipped


def _replace(target: Path, good: Path) -> None:
    """``target`` becomes a copy of ``good`` (or disappears, when there was no good version)."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    if good.is_dir():
        shutil.copytree(good, target, symlinks=True, ignore=_too_large)


def _restore_shared(candidate: Path, good: Path) -> None:
    """Everything outside template folders (layouts, partials, loose files) back to ``good``'s."""
    for path in list(candidate.iterdir()):
        if path.name.startswith(("_", ".")) or not path.is_dir():
            _replace_any(path, good / path.name)
    for path in good.iterdir():
        if (path.name.startswith(("_", ".")) or not path.is_dir()) and not (candidate / path.name).exists():
            _replace_any(candidate / path.name, path)


def _replace_any(target: Path, good: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    if good.is_dir() and not good.is_symlink():
        shutil.copytree(good, target, symlinks=True)
    elif good.exists() or good.is_symlink():
        shutil.copy2(good, target, follow_symlinks=False)
