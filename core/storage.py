"""The storage backends behind core.blobs (Django's `STORAGES`): the local disk by default,
S3-compatible object storage (django-storages with boto3) when AWS_STORAGE_BUCKET_NAME is set.

`LocalBlobStorage` is Django's FileSystemStorage made fit for content-addressed files that
several processes write at once: a name is written atomically (a temporary file beside it, then
a rename, so a reader never sees half a file and a full disk leaves nothing behind), writing a
name again replaces it instead of inventing another name, and its folder follows the setting it
names (MEDIA_ROOT or MODELS_ROOT) when that setting changes, as tests do.
"""

import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage


class LocalBlobStorage(FileSystemStorage):
    def __init__(self, root_setting: str = "MEDIA_ROOT", **kwargs) -> None:
        self.root_setting = root_setting
        super().__init__(**kwargs)

    @property
    def base_location(self) -> str:
        return self._value_or_setting(self._location, str(getattr(settings, self.root_setting)))

    @property
    def location(self) -> str:
        return os.path.abspath(self.base_location)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name  # content-addressed: the same name holds the same bytes

    def _save(self, name: str, content) -> str:
        target = Path(self.path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as stream:
                if hasattr(content, "chunks"):
                    for chunk in content.chunks():
                        stream.write(chunk)
                else:
                    stream.write(content.read())
            os.replace(temporary, target)
        except BaseException:  # a full disk among others: no half-written file stays
            Path(temporary).unlink(missing_ok=True)
            raise
        return name
