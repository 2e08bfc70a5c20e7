"""System checks of the digest app (``manage.py check``)."""

from django.core.checks import Tags
from django.core.checks.registry import registry
from django.core.management import call_command

from digest.checks import site_url_is_https, static_files_manifest_present

MANIFEST_STORAGE = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}


def use_manifest_storage(settings, static_root):
    settings.STATIC_ROOT = str(static_root)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": MANIFEST_STORAGE}


def deploy_check_ids():
    return [issue.id for issue in registry.run_checks(tags=[Tags.staticfiles], include_deployment_checks=True)]


def test_check_deploy_warns_when_collectstatic_has_not_written_the_manifest(settings, tmp_path):
    use_manifest_storage(settings, tmp_path)

    [warning] = static_files_manifest_present(None)

    assert warning.id == "digest.W004"
    assert "collectstatic" in warning.hint
    assert "digest.W004" in deploy_check_ids()


def test_check_deploy_warns_when_there_is_no_static_root_to_find_the_manifest_in(settings):
    use_manifest_storage(settings, "")
    settings.STATIC_ROOT = None
    assert [warning.id for warning in static_files_manifest_present(None)] == ["digest.W004"]


def test_check_deploy_is_quiet_once_collectstatic_has_run(settings, tmp_path):
    use_manifest_storage(settings, tmp_path)
    call_command("collectstatic", "--noinput", verbosity=0)

    assert static_files_manifest_present(None) == []
    assert "digest.W004" not in deploy_check_ids()


def test_no_warning_without_a_manifest_storage(settings):
    settings.STATIC_ROOT = None
    settings.STORAGES = {
        **settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    }
    assert static_files_manifest_present(None) == []


def test_the_manifest_check_runs_only_with_deploy(settings, tmp_path):
    use_manifest_storage(settings, tmp_path)
    assert "digest.W004" not in [issue.id for issue in registry.run_checks(tags=[Tags.staticfiles])]


def test_check_deploy_warns_when_the_unsubscribe_link_would_not_be_https(settings):
    settings.SITE_URL = "http://paperboy.example.org"

    [warning] = site_url_is_https(None)

    assert warning.id == "digest.W005"
    assert "RFC 8058" in warning.msg
    assert "digest.W005" in [issue.id for issue in registry.run_checks(include_deployment_checks=True)]
    assert "digest.W005" not in [issue.id for issue in registry.run_checks()]  # the demo's local URL


def test_an_https_site_url_gives_no_warning(settings):
    settings.SITE_URL = "https://paperboy.example.org"
    assert site_url_is_https(None) == []
