"""Settings that persist between napari sessions (QSettings, an INI file per user)."""

from __future__ import annotations

import json
from pathlib import Path

from magicgui.widgets.bases import ValueWidget
from qtpy.QtCore import QSettings

from ..core.json_text import loads_finite

ORGANIZATION = APPLICATION = "napari-deepcel0"


def settings_store() -> QSettings:
    """The plugin's QSettings (INI format in the user's configuration folder)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def load_value(key: str):
    """A value stored with :func:`save_value`, or None when absent or unreadable."""
    raw = settings_store().value(key)
    if raw is None:
        return None
    try:  # NaN and infinities (a hand-edited file) count as unreadable: Qt would clamp them
        return loads_finite(str(raw))
    except ValueError:  # (json.JSONDecodeError and NotFiniteError are ValueErrors)
        return None


def save_value(key: str, value) -> None:
    """Store a JSON-compatible value (paths are stored as strings)."""
    store = settings_store()
    store.setValue(key, json.dumps(str(value) if isinstance(value, Path) else value))
    store.sync()


class PersistentValues:
    """Remembers the values of some widgets between sessions, with a reset.

    Each widget's value is restored from the settings when this object is created
    and saved whenever it changes. A stored value that the widget refuses (e.g. a
    choice that no longer exists) is ignored.

    Parameters
    ----------
    group
        Settings group, e.g. ``"localize"``.
    widgets
        Name -> magicgui value widget.
    """

    def __init__(self, group: str, widgets: dict[str, ValueWidget]):
        self.group = group
        self.widgets = widgets
        self.defaults = {name: w.value for name, w in widgets.items()}
        for name, widget in widgets.items():
            stored = load_value(self._key(name))
            if stored is not None:
                try:
                    widget.value = stored
                except (ValueError, TypeError):
                    pass
            widget.changed.connect(lambda value, name=name: save_value(self._key(name), _plain(value)))

    def _key(self, name: str) -> str:
        return f"{self.group}/{name}"

    def reset(self) -> None:
        """Put every widget back to its default value (and store the defaults)."""
        for name, widget in self.widgets.items():
            widget.value = self.defaults[name]


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
