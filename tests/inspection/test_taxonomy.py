"""Defect taxonomies: the migration's default types, supervisors editing them through the API
(audited), types in use kept (409 on delete, deactivation instead), and the types used: on the
annotation page, in labelers' and inspectors' regions, in COCO, on the monitoring Pareto."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.models import DefectType, Taxonomy, TaxonomyChange
from labeling.models import LabelTask
from labeling.services import dataset_version_coco, dataset_version_create
from tests.factories import DecisionFactory, ProductionLineFactory, UserFactory, station_with_token
from tests.labeling.conftest import accept, capture_with_image

pytestmark = pytest.mark.django_db

TYPES = "/api/v1/taxonomies/default/defect-types"
BOX = {"shape": "box", "box": [2, 3, 20, 30]}


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def supervisor():
    return UserFactory(roles=["supervisor"])


def add_type(client, **fields):
    body = {"name": "dent", "label": "Dent", "colour": "#00aa55", "hotkey": "5", **fields}
    return client.post(TYPES, body, format="json")


def test_the_migration_keeps_the_four_types_with_the_pages_colours_and_hotkeys():
    taxonomy = Taxonomy.objects.get(is_default=True)
    rows = [
        (t.name, t.colour, t.hotkey, t.severity, t.is_active)
        for t in DefectType.objects.filter(taxonomy=taxonomy)
    ]
    assert rows == [
        ("scratch", "#ffcc00", "1", "fail", True),
        ("crack", "#ff3b30", "2", "fail", True),
        ("stain", "#bf5af2", "3", "fail", True),
        ("other", "#8e8e93", "4", "fail", True),
    ]


def test_a_supervisor_adds_a_type_the_annotation_page_offers_and_a_region_accepts(supervisor):
    client = as_user(supervisor)
    created = add_type(client, severity="minor")
    assert created.status_code == 201, created.content
    assert created.json()["hotkey"] == "5" and created.json()["severity"] == "minor"

    # The annotation page's data lists it with its colour and hotkey; the key list shows it.
    labeler = UserFactory(roles=["labeler"])
    page = Client()
    page.force_login(labeler)
    response = page.get("/label/")
    config = response.context["config"]
    default = config["taxonomies"][config["defaultTaxonomy"]]
    assert [t["name"] for t in default] == ["scratch", "crack", "stain", "other", "dent"]
    assert default[-1] == {
        "name": "dent",
        "label": "Dent",
        "colour": "#00aa55",
        "hotkey": "5",
        "severity": "minor",
        "active": True,
    }
    assert b'id="type-keys"' in response.content and b"Dent" in response.content

    # A labeler's region may now be a dent; an unknown type is a 400 that names the known ones.
    line = ProductionLineFactory(code="L1")
    capture = capture_with_image(line=line)
    LabelTask.objects.create(
        capture=capture, line=line, source="override", image=capture.image, width=64, height=48
    )
    annotation = as_user(labeler).post("/api/v1/label-tasks/next", {}, format="json").json()
    url = f"/api/v1/annotations/{annotation['id']}"
    saved = as_user(labeler).put(
        url, {"label": "defect", "regions": [{**BOX, "defect_type": "dent"}]}, format="json"
    )
    assert saved.status_code == 200, saved.content
    assert saved.json()["regions"][0]["defect_type"] == "dent"
    unknown = as_user(labeler).put(
        url, {"regions": [{**BOX, "defect_type": "blowhole"}]}, format="json"
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "unknown_defect_type"
    assert "dent" in unknown.json()["error"]["message"]


def test_duplicate_names_and_hotkeys_are_400_and_nothing_is_stored(supervisor):
    client = as_user(supervisor)
    assert add_type(client).status_code == 201
    duplicate_name = add_type(client, hotkey="6")
    assert duplicate_name.status_code == 400
    assert duplicate_name.json()["error"]["code"] == "duplicate_name"
    duplicate_key = add_type(client, name="chip", hotkey="1")  # scratch's
    assert duplicate_key.status_code == 400
    assert duplicate_key.json()["error"]["code"] == "duplicate_hotkey"
    assert "scratch" in duplicate_key.json()["error"]["message"]
    reserved = add_type(client, name="chip", hotkey="b")  # the page's box tool
    assert reserved.status_code == 400 and reserved.json()["error"]["code"] == "reserved_hotkey"
    bad_colour = add_type(client, name="chip", hotkey="7", colour="red")
    assert bad_colour.status_code == 400
    bad_name = add_type(client, name="Chip Off", hotkey="7")
    assert bad_name.status_code == 400
    taken = client.patch(f"{TYPES}/dent", {"hotkey": "2"}, format="json")
    assert taken.status_code == 400
    assert set(DefectType.objects.values_list("name", flat=True)) == {
        "scratch",
        "crack",
        "stain",
        "other",
        "dent",
    }
    assert DefectType.objects.get(name="dent").hotkey == "5"


def test_only_supervisors_change_the_taxonomy():
    for role in ("labeler", "inspector"):
        client = as_user(UserFactory(roles=[role]))
        assert client.get(TYPES).status_code == 200  # reading is for everyone with a role
        assert add_type(client).status_code == 403
        assert client.patch(f"{TYPES}/crack", {"label": "x"}, format="json").status_code == 403
        assert client.delete(f"{TYPES}/crack").status_code == 403
        assert client.post("/api/v1/taxonomies", {"name": "x"}, format="json").status_code == 403
    page = Client()
    page.force_login(UserFactory(roles=["labeler"]))
    assert page.get("/supervise/defect-types/").status_code == 403
    assert not TaxonomyChange.objects.exists()


def test_every_change_is_audited_with_who_and_before_after(supervisor):
    client = as_user(supervisor)
    add_type(client)
    changed = client.patch(f"{TYPES}/dent", {"label": "Dent (deep)", "colour": "#112233"})
    assert changed.status_code == 200, changed.content
    client.patch(f"{TYPES}/dent", {"is_active": False}, format="json")
    client.delete(f"{TYPES}/dent")
    trail = client.get("/api/v1/taxonomies/default/changes").json()
    assert [(c["action"], c["defect_type"], c["changed_by"]) for c in trail] == [
        ("deleted", "dent", supervisor.username),
        ("deactivated", "dent", supervisor.username),
        ("updated", "dent", supervisor.username),
        ("created", "dent", supervisor.username),
    ]
    assert trail[2]["changes"] == {
        "label": {"old": "Dent", "new": "Dent (deep)"},
        "colour": {"old": "#00aa55", "new": "#112233"},
    }
    assert trail[1]["changes"] == {"is_active": {"old": True, "new": False}}
    page = Client()
    page.force_login(supervisor)
    html = page.get("/supervise/defect-types/").content.decode()
    assert "Dent (deep)" in html and "deactivated" in html


def test_a_used_type_cannot_be_deleted_but_can_be_deactivated_and_old_data_stays_savable(
    supervisor,
):
    client = as_user(supervisor)
    line = ProductionLineFactory(code="L1")
    station = station_with_token(line=line)
    DecisionFactory(
        capture__station=station, regions=[{"box": [1, 2, 3, 4], "defect_type": "stain"}]
    )
    refused = client.delete(f"{TYPES}/stain")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "defect_type_in_use"
    assert "deactivate" in refused.json()["error"]["message"]
    assert DefectType.objects.filter(name="stain").exists()

    # Deactivated: no longer offered, and new regions cannot use it...
    assert client.patch(f"{TYPES}/stain", {"is_active": False}, format="json").status_code == 200
    labeler = UserFactory(roles=["labeler"])
    capture = capture_with_image(line=line)
    LabelTask.objects.create(
        capture=capture,
        line=line,
        source="override",
        image=capture.image,
        width=64,
        height=48,
        pre_annotation=[{**BOX, "defect_type": "crack"}],
    )
    annotation = as_user(labeler).post("/api/v1/label-tasks/next", {}, format="json").json()
    url = f"/api/v1/annotations/{annotation['id']}"
    stain = {**BOX, "defect_type": "stain"}
    assert as_user(labeler).put(url, {"regions": [stain]}, format="json").status_code == 400
    # ...but a task that already carries it keeps it readable and savable.
    task = LabelTask.objects.get()
    task.pre_annotation = [stain]
    task.save()
    assert as_user(labeler).put(url, {"regions": [stain]}, format="json").status_code == 200
    # A renamed label keeps the name the data carries; the name itself cannot change.
    renamed = client.patch(f"{TYPES}/crack", {"label": "Hairline crack"}, format="json")
    assert renamed.json()["name"] == "crack"
    # An unused type can still be deleted (a mistake).
    add_type(client)
    assert client.delete(f"{TYPES}/dent").status_code == 204


def test_an_inspectors_region_takes_the_lines_types(supervisor):
    client = as_user(supervisor)
    add_type(client)
    inspector = UserFactory(roles=["inspector"], lines=[ProductionLineFactory(code="L1")])
    station = station_with_token(line=ProductionLineFactory(code="L1"))

    def verdict(defect_type):
        decision = DecisionFactory(
            capture__station=station, model_verdict="uncertain", reason="uncertain"
        )
        return as_user(inspector).post(
            f"/api/v1/captures/{decision.capture_id}/verdict",
            {"verdict": "fail", "regions": [{"box": [1, 2, 50, 60], "defect_type": defect_type}]},
            format="json",
        )

    assert verdict("dent").status_code == 200
    refused = verdict("dnet")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unknown_defect_type"

    # A line with a taxonomy of its own: its types, not the default ones.
    assert (
        client.post(
            "/api/v1/taxonomies", {"name": "tiles", "lines": ["L1"]}, format="json"
        ).status_code
        == 201
    )
    tiles = "/api/v1/taxonomies/tiles/defect-types"
    assert client.post(tiles, {"name": "blowhole", "hotkey": "1"}, format="json").status_code == 201
    assert verdict("blowhole").status_code == 200
    assert verdict("dent").status_code == 400
    page = Client()
    page.force_login(inspector)
    config = page.get("/inspect/L1/").context["config"]
    assert [t["name"] for t in config["defectTypes"]["L1"]] == ["blowhole"]
    assert as_user(supervisor).get("/api/v1/taxonomies/tiles").json()["lines"] == ["L1"]
    assert "L1" not in as_user(supervisor).get("/api/v1/taxonomies/default").json()["lines"]


def test_coco_categories_are_the_taxonomys_types_and_the_versions_names(supervisor):
    add_type(as_user(supervisor))
    line = ProductionLineFactory(code="L1")
    capture = capture_with_image(line=line)
    task = LabelTask.objects.create(
        capture=capture, line=line, source="override", image=capture.image, width=64, height=48
    )
    accept(task, regions=[{**BOX, "defect_type": "dent"}, {**BOX, "defect_type": "fray"}])
    version = dataset_version_create(name="v1", created_by=supervisor)
    coco = dataset_version_coco(dataset_version=version)
    names = [c["name"] for c in coco["categories"]]
    assert names == ["scratch", "crack", "stain", "other", "dent", "fray"]
    by_id = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(by_id[a["category_id"]] for a in coco["annotations"]) == ["dent", "fray"]
