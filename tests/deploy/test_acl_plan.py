"""The cluster's topics and ACLs (deploy/acl_plan.py) and the files generated from them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy import acl_plan
from deploy.acl_plan import GATEWAY, Party, Plan, consumer_principal, plan
from deploy.partnership_file import load_partnership
from safeguard.runtime import exchange_topics
from sgx.errors import ConfigError
from sgx.kafka.wiring import GATEWAY_GROUP, open_cases_group, receipts_group
from sgx.kafka.wiring import REPLAY_TOPIC as REPLAY
from sgx.keys.connectors import Connector
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import PartySpec
from sgx.settings import KafkaSettings
from sgx.wire.schema_registry import TOPIC as SCHEMAS

LA_A, LA_B = "la-alpha", "la-beta"
SCHOOL, POLICE = "school-oak", "police-north"
PARTIES = [
    Party(LA_A, "local_authority", gss_code="E09000007"),
    Party(LA_B, "local_authority", gss_code="E09000019"),
    Party(SCHOOL, "school", serves=(LA_A,)),
    Party(POLICE, "police", serves=(LA_A, LA_B)),
]
HEALTH = Party("nhs-east", "health", serves_any=True)


@pytest.fixture(scope="module")
def the_plan() -> Plan:
    return plan(PARTIES)


def test_topics_for_every_party_and_delivery_only_where_the_gateway_delivers(
    the_plan: Plan,
) -> None:
    names = {t.name: t for t in plan([*PARTIES, HEALTH]).topics}
    for party in PARTIES:
        assert f"sgx.inbound.{party.id}" in names
        assert f"sgx.receipts.{party.id}" in names
    # LAs (social care), schools (Encompass key adult), police (Protocol SPOC); not health
    assert {n for n in names if n.startswith("sgx.delivery.")} == {
        f"sgx.delivery.{LA_A}",
        f"sgx.delivery.{LA_B}",
        f"sgx.delivery.{SCHOOL}",
        f"sgx.delivery.{POLICE}",
    }
    assert all(t.replicas == 3 for t in the_plan.topics)


def test_the_plan_has_exactly_the_topics_and_partitions_the_services_create(
    tmp_path: Path,
) -> None:
    # acl_plan restates the runtime's topic names, delivery kinds and partition counts
    parties = [*PARTIES, HEALTH]
    specs = [PartySpec("gateway", "gateway", "gateway")]
    specs += [
        PartySpec(p.id, p.kind, p.id, p.serves, gss_code=p.gss_code, serves_any=p.serves_any)
        for p in parties
    ]
    services = exchange_topics(init_trust(tmp_path / "trust", specs), KafkaSettings())
    assert {t.name: t.partitions for t in plan(parties).topics} == services


def test_an_agency_writes_only_its_inbound_and_reads_only_its_receipts(the_plan: Plan) -> None:
    topics = [t.name for t in the_plan.topics]
    writable = {t for t in topics if the_plan.allows(SCHOOL, "Write", "topic", t)}
    readable = {t for t in topics if the_plan.allows(SCHOOL, "Read", "topic", t)}
    assert writable == {f"sgx.inbound.{SCHOOL}"}
    assert readable == {f"sgx.receipts.{SCHOOL}", SCHEMAS}  # and the public schema registry
    assert not the_plan.allows(SCHOOL, "Read", "group", receipts_group(POLICE))
    assert not the_plan.allows(SCHOOL, "Read", "group", GATEWAY_GROUP)


def test_an_agency_may_join_the_groups_its_services_read_receipts_in(the_plan: Plan) -> None:
    # deny by default: a group the plan does not grant fails the service at start
    for party in PARTIES:
        assert the_plan.allows(party.id, "Read", "group", receipts_group(party.id)), party
    # `safeguard producer school watch` keeps the open-case list in a group of its own
    assert the_plan.allows(SCHOOL, "Read", "group", open_cases_group(SCHOOL))
    assert not the_plan.allows(POLICE, "Read", "group", open_cases_group(SCHOOL))


def test_a_school_cannot_read_any_delivery_topic(the_plan: Plan) -> None:
    for party in (LA_A, LA_B, POLICE, SCHOOL):
        assert not the_plan.allows(SCHOOL, "Read", "topic", f"sgx.delivery.{party}")
        assert not the_plan.allows(SCHOOL, "Write", "topic", f"sgx.delivery.{party}")


def test_a_school_key_adult_consumer_reads_only_its_school_delivery_topic(the_plan: Plan) -> None:
    consumer = consumer_principal(SCHOOL)
    readable = {
        t.name for t in the_plan.topics if the_plan.allows(consumer, "Read", "topic", t.name)
    }
    assert readable == {f"sgx.delivery.{SCHOOL}", SCHEMAS}


def test_a_local_authority_consumer_reads_only_its_own_delivery_and_receipts_topics(
    the_plan: Plan,
) -> None:
    """The LA's consumer keeps the gateway's answers to the LA as rows
    (consumers.answer_rows): it reads the LA's receipts topic, in its own group, and no
    other party's."""
    consumer = consumer_principal(LA_A)
    topics = [t.name for t in the_plan.topics]
    assert {t for t in topics if the_plan.allows(consumer, "Read", "topic", t)} == {
        f"sgx.delivery.{LA_A}",
        f"sgx.receipts.{LA_A}",
        SCHEMAS,
    }
    assert not the_plan.allows(consumer, "Read", "topic", f"sgx.delivery.{LA_B}")
    assert not the_plan.allows(consumer, "Read", "topic", f"sgx.receipts.{LA_B}")
    assert not any(the_plan.allows(consumer, "Write", "topic", t) for t in topics)
    assert the_plan.allows(consumer, "Read", "group", consumer)
    assert not the_plan.allows(consumer, "Read", "group", consumer_principal(LA_B))
    # the local authority as an agency (allocations, share requests) cannot read deliveries
    assert not the_plan.allows(LA_A, "Read", "topic", f"sgx.delivery.{LA_A}")
    assert not the_plan.allows(LA_A, "Read", "topic", f"sgx.delivery.{LA_B}")


def test_the_gateway_reads_inbound_and_writes_delivery_and_receipts_only(the_plan: Plan) -> None:
    for t in the_plan.topics:
        kind = t.name.split(".")[1]
        if t.name in (SCHEMAS, REPLAY):  # it writes the registry and the replays, and reads both
            assert the_plan.allows(GATEWAY, "Read", "topic", t.name)
            assert the_plan.allows(GATEWAY, "Write", "topic", t.name)
            continue
        read = kind in ("inbound", "allocations")
        assert the_plan.allows(GATEWAY, "Read", "topic", t.name) == read
        assert the_plan.allows(GATEWAY, "Write", "topic", t.name) == (not read)
    assert the_plan.allows(GATEWAY, "Read", "group", GATEWAY_GROUP)
    # nobody else writes the registry or the replay topic, nor reads the replays
    for principal in the_plan.principals:
        if principal != GATEWAY:
            assert not the_plan.allows(principal, "Write", "topic", SCHEMAS)
            assert not the_plan.allows(principal, "Write", "topic", REPLAY)
            assert not the_plan.allows(principal, "Read", "topic", REPLAY)


def test_describe_is_the_only_grant_beyond_own_topics(the_plan: Plan) -> None:
    # every principal may see that the exchange's topics exist, nothing more
    for principal in the_plan.principals:
        assert the_plan.allows(principal, "Describe", "topic", f"sgx.delivery.{LA_B}")
        assert not the_plan.allows(principal, "Describe", "topic", "__consumer_offsets")


@pytest.mark.parametrize(
    ("parties", "message"),
    [
        ([Party("la_a", "local_authority")], "id must be"),
        ([Party("sgx-gateway", "school")], "reserved"),
        ([Party("a", "school"), Party("a", "police")], "duplicate"),
        ([Party("a", "gateway")], "kind"),  # type: ignore[arg-type]
    ],
)
def test_bad_parties_are_refused_with_where(parties: list[Party], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        plan(parties)
    assert "parties[" in str(info.value)


def test_a_parties_file_needs_id_and_kind(tmp_path: Path) -> None:
    bad = tmp_path / "parties.toml"
    bad.write_text('[[party]]\nid = "school-a"\n')
    with pytest.raises(ConfigError, match=r"party\[0\] must have the keys id and kind"):
        acl_plan.load_parties(bad)


_CAMDEN = '[[party]]\nid = "la-camden"\nkind = "local_authority"\ngss_code = "E09000007"\n'


@pytest.mark.parametrize(
    ("extra", "party", "field", "message"),
    [
        # a local authority: its GSS code, present, well-formed and its own
        (
            '[[party]]\nid = "la-islington"\nkind = "local_authority"\n',
            "party[1] ('la-islington')",
            "gss_code",
            "needs its ONS GSS code",
        ),
        (
            '[[party]]\nid = "la-islington"\nkind = "local_authority"\ngss_code = "E9000019"\n',
            "party[1] ('la-islington')",
            "gss_code",
            "'E9000019' is not an ONS GSS code",
        ),
        (
            '[[party]]\nid = "la-islington"\nkind = "local_authority"\ngss_code = "e09000019"\n',
            "party[1] ('la-islington')",
            "gss_code",
            "is not an ONS GSS code",
        ),
        (
            '[[party]]\nid = "la-islington"\nkind = "local_authority"\ngss_code = "E09000007"\n',
            "party[1] ('la-islington')",
            "gss_code",
            "E09000007 is already the GSS code of 'la-camden'",
        ),
        (
            '[[party]]\nid = "la-islington"\nkind = "local_authority"\ngss_code = "E09000019"\n'
            'serves = ["la-camden"]\n',
            "party[1] ('la-islington')",
            "serves",
            "a local authority serves only itself",
        ),
        # any other agency: the LAs it serves, which must be LAs of this file
        (
            '[[party]]\nid = "school-oak"\nkind = "school"\ngss_code = "E09000019"\n',
            "party[1] ('school-oak')",
            "gss_code",
            "only a local authority has a GSS code, not a school",
        ),
        (
            '[[party]]\nid = "school-oak"\nkind = "school"\nserves = ["la-islington"]\n',
            "party[1] ('school-oak')",
            "serves[0]",
            "'la-islington' is not a local authority in this partnership",
        ),
        (
            '[[party]]\nid = "met-police"\nkind = "police"\nserves = ["la-camden"]\n'
            '[[party]]\nid = "nhs-x"\nkind = "health"\nserves = ["la-camden", "met-police"]\n',
            "party[2] ('nhs-x')",
            "serves[1]",
            "'met-police' is not a local authority",
        ),
        (
            '[[party]]\nid = "met-police"\nkind = "police"\nserves = ["la-camden"]\n'
            "serves_any = true\n",
            "party[1] ('met-police')",
            "serves",
            "either serves or serves_any, not both",
        ),
        # the fields' types, and no others
        (
            '[[party]]\nid = "met-police"\nkind = "police"\nserves = "la-camden"\n',
            "party[1] ('met-police')",
            "serves",
            "must be a list of LA ids",
        ),
        (
            '[[party]]\nid = "met-police"\nkind = "police"\nserves_any = "yes"\n',
            "party[1] ('met-police')",
            "serves_any",
            "must be true or false",
        ),
        (
            '[[party]]\nid = "la-islington"\nkind = "local_authority"\ngss_code = 9000019\n',
            "party[1] ('la-islington')",
            "gss_code",
            "must be a string",
        ),
        (
            '[[party]]\nid = "school-oak"\nkind = "school"\nlocal_authority = "la-camden"\n',
            "party[1] ('school-oak')",
            "local_authority",
            "is not one of gss_code, id, kind, serves, serves_any",
        ),
    ],
)
def test_a_parties_file_is_refused_naming_the_file_the_party_and_the_field(
    tmp_path: Path, extra: str, party: str, field: str, message: str
) -> None:
    bad = tmp_path / "parties.toml"
    bad.write_text(_CAMDEN + extra)
    with pytest.raises(ConfigError) as info:
        acl_plan.load_parties(bad)
    text = str(info.value)
    assert text.startswith(f"{bad}: {party}: field '{field}'"), text
    assert message in text


def test_an_agency_may_serve_several_local_authorities_or_any(tmp_path: Path) -> None:
    good = tmp_path / "parties.toml"
    good.write_text(
        _CAMDEN
        + '[[party]]\nid = "met-police"\nkind = "police"\n'
        + 'serves = ["la-camden", "la-islington"]\n'  # an LA given later in the file
        + '[[party]]\nid = "la-islington"\nkind = "local_authority"\ngss_code = "E09000019"\n'
        + '[[party]]\nid = "nspcc"\nkind = "health"\nserves_any = true\n'
    )
    parties = acl_plan.load_parties(good)
    assert [(p.id, p.gss_code, p.serves, p.serves_any) for p in parties] == [
        ("la-camden", "E09000007", (), False),
        ("met-police", None, ("la-camden", "la-islington"), False),
        ("la-islington", "E09000019", (), False),
        ("nspcc", None, (), True),
    ]


def test_the_plan_refuses_a_partnership_that_does_not_fit_too() -> None:
    with pytest.raises(ConfigError, match=r"parties\[0\] \('la-a'\): field 'gss_code'"):
        plan([Party("la-a", "local_authority")])
    with pytest.raises(ConfigError, match=r"parties\[1\] \('school-a'\): field 'serves\[0\]'"):
        plan([*PARTIES[:1], Party("school-a", "school", serves=("la-nowhere",))])


def test_serving_changes_no_topic_principal_or_acl() -> None:
    # topics, users and ACLs are per party; whom a record reaches is the gateway's routing
    rewired = [
        *PARTIES[:2],
        Party(SCHOOL, "school", serves=(LA_B,)),
        Party(POLICE, "police", serves_any=True),
    ]
    assert plan(rewired) == plan(PARTIES)


def test_the_committed_partnership_spans_two_local_authorities() -> None:
    parties = {p.id: p for p in acl_plan.load_parties(acl_plan.PARTIES_FILE)}
    las = {p.id: p.gss_code for p in parties.values() if p.kind == "local_authority"}
    assert las == {"la-camden": "E09000007", "la-islington": "E09000019"}
    assert {p.id: p.serves for p in parties.values() if p.kind != "local_authority"} == {
        "school-hillside": ("la-camden",),
        "school-canonbury": ("la-islington",),
        "school-gospel-oak": ("la-camden",),
        "school-highbury-fields": ("la-islington",),
        "nhs-royal-free": ("la-camden", "la-islington"),
        "met-police": ("la-camden", "la-islington"),
        "gp-hillside": ("la-camden",),  # referrers: a GP practice, health visiting, a charity
        "whittington-health": ("la-islington",),
        "family-action-camden": ("la-camden",),
    }
    principals = plan(parties.values()).principals
    assert {consumer_principal(la) for la in las} <= set(principals)


def test_committed_script_and_strimzi_resources_are_generated_from_the_plan() -> None:
    for path, text in acl_plan.rendered().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is out of date: run python -m deploy.acl_plan write"
        )
    assert acl_plan.main(["check"]) == 0


def test_script_is_valid_bash_and_grants_every_binding() -> None:
    script = acl_plan.SCRIPT_FILE
    subprocess.run(["bash", "-n", str(script)], check=True)
    the_plan = plan(*acl_plan.load_partnership(acl_plan.PARTIES_FILE))
    text = script.read_text(encoding="utf-8")
    for b in the_plan.bindings:
        assert f"acl {b.principal} {b.operation} {b.resource} {b.pattern} {b.name}\n" in text
    for t in the_plan.topics:
        retention = "" if t.retention_ms is None else f" --config retention.ms={t.retention_ms}"
        retention += " --config cleanup.policy=compact" if t.compacted else ""
        assert f"topic {t.name} {t.partitions} {t.replicas}{retention}\n" in text


# -- connectors ------------------------------------------------------------------------
OTHER_SCHOOL = Party("school-elm", "school", serves=(LA_B,))
MIS = Connector(id="mis-acme", name="Acme MIS", carries=[SCHOOL, OTHER_SCHOOL.id])


def connected_plan() -> Plan:
    return plan([*PARTIES, OTHER_SCHOOL], [MIS])


def test_a_connector_has_one_inbound_topic_for_the_agencies_it_carries() -> None:
    names = {t.name for t in connected_plan().topics}
    inbound = {n for n in names if n.startswith("sgx.inbound.")}
    # the carried schools have none of their own; the LAs and the police are their own
    assert inbound == {f"sgx.inbound.{p}" for p in (LA_A, LA_B, POLICE, MIS.id)}
    # their receipts and their key adults' deliveries come on the connector's topics too
    for school in (SCHOOL, OTHER_SCHOOL.id):
        assert not {f"sgx.receipts.{school}", f"sgx.delivery.{school}"} & names
    assert {f"sgx.receipts.{MIS.id}", f"sgx.delivery.{MIS.id}"} <= names
    # an agency of its own keeps its own
    assert {f"sgx.receipts.{POLICE}", f"sgx.delivery.{POLICE}"} <= names


def test_a_connector_carrying_no_school_or_force_has_no_delivery_topic() -> None:
    epr = Connector(id="epr-east", name="East EPR", carries=[HEALTH.id])
    names = {t.name for t in plan([*PARTIES, HEALTH], [epr]).topics}
    assert {"sgx.inbound.epr-east", "sgx.receipts.epr-east"} <= names
    assert "sgx.delivery.epr-east" not in names
    assert f"sgx.receipts.{HEALTH.id}" not in names


def test_an_agency_carried_twice_hears_on_its_first_connectors_topics() -> None:
    second = Connector(id="mis-beta", name="Beta MIS", carries=[SCHOOL])
    the_plan = plan([*PARTIES, OTHER_SCHOOL], [MIS, second])
    assert the_plan.allows(second.id, "Write", "topic", "sgx.inbound.mis-beta")
    assert not the_plan.allows(second.id, "Read", "group", receipts_group(SCHOOL))
    assert the_plan.allows(MIS.id, "Read", "group", receipts_group(SCHOOL))
    names = {t.name for t in the_plan.topics}
    assert not {"sgx.receipts.mis-beta", "sgx.delivery.mis-beta"} & names  # it hears nothing
    assert not the_plan.allows(second.id, "Read", "topic", "sgx.receipts.mis-beta")


def test_a_connector_writes_only_its_topic_and_reads_its_agencies_receipts() -> None:
    the_plan = connected_plan()
    topics = [t.name for t in the_plan.topics]
    writable = {t for t in topics if the_plan.allows(MIS.id, "Write", "topic", t)}
    readable = {t for t in topics if the_plan.allows(MIS.id, "Read", "topic", t)}
    assert writable == {f"sgx.inbound.{MIS.id}"}
    # its own outbound topics only, in its schools' groups (it runs their services)
    assert readable == {f"sgx.receipts.{MIS.id}", f"sgx.delivery.{MIS.id}", SCHEMAS}
    for school in (SCHOOL, OTHER_SCHOOL.id):
        assert the_plan.allows(MIS.id, "Read", "group", receipts_group(school))
        assert the_plan.allows(MIS.id, "Read", "group", open_cases_group(school))
        assert the_plan.allows(MIS.id, "Read", "group", consumer_principal(school))
    assert not the_plan.allows(MIS.id, "Read", "group", receipts_group(POLICE))
    assert not the_plan.allows(MIS.id, "Read", "group", consumer_principal(POLICE))
    assert not the_plan.allows(MIS.id, "Read", "topic", f"sgx.delivery.{POLICE}")
    # a carried school has no principal of its own, nor a consumer's, nor any grant
    for principal in (SCHOOL, consumer_principal(SCHOOL)):
        assert principal not in the_plan.principals
        assert not any(b.principal == principal for b in the_plan.bindings)
    assert MIS.id in the_plan.principals
    # nobody else reads the connector's outbound topics; the gateway writes them
    for topic in (f"sgx.receipts.{MIS.id}", f"sgx.delivery.{MIS.id}"):
        readers = {b.principal for b in the_plan.bindings if b.matches("topic", topic)
                   and b.operation == "Read"}  # fmt: skip
        assert readers == {MIS.id}
        assert the_plan.allows(GATEWAY, "Write", "topic", topic)
    # and the gateway reads the connector's topic by its inbound prefix
    assert the_plan.allows(GATEWAY, "Read", "topic", f"sgx.inbound.{MIS.id}")


def test_a_connector_may_connect_as_a_principal_of_its_own_name() -> None:
    named = Connector(id="mis-acme", name="Acme", principal="acme-cloud", carries=[SCHOOL])
    the_plan = plan(PARTIES, [named])
    assert "acme-cloud" in the_plan.principals
    assert "mis-acme" not in the_plan.principals
    assert the_plan.allows("acme-cloud", "Write", "topic", "sgx.inbound.mis-acme")


@pytest.mark.parametrize(
    "connectors",
    [[MIS], [MIS, Connector(id="mis-beta", name="Beta", carries=[SCHOOL, HEALTH.id])]],
    ids=["one", "an-agency-carried-twice"],
)
def test_the_connected_plan_has_the_topics_the_services_create(
    tmp_path: Path, connectors: list[Connector]
) -> None:
    parties = [*PARTIES, OTHER_SCHOOL, HEALTH]
    specs = [PartySpec("gateway", "gateway", "gateway")]
    specs += [
        PartySpec(p.id, p.kind, p.id, p.serves, gss_code=p.gss_code, serves_any=p.serves_any)
        for p in parties
    ]
    trust = init_trust(tmp_path / "trust", specs, connectors)
    services = exchange_topics(trust, KafkaSettings())
    assert {t.name: t.partitions for t in plan(parties, connectors).topics} == services


@pytest.mark.parametrize(
    ("connector", "problem"),
    [
        (Connector(id=SCHOOL, name="x", carries=[POLICE]), r"field 'id': 'school-oak' is a party"),
        (Connector(id="mis-x", name="x", carries=[LA_A]), r"'la-alpha' is a local_authority"),
        (Connector(id="mis-x", name="x", carries=["nobody"]), r"'nobody' is not a party"),
        (Connector(id="mis-x", name="x", carries=[SCHOOL, SCHOOL]), r"listed twice"),
        (Connector(id="sgx-mis", name="x", carries=[SCHOOL]), r"not sgx-\*"),
        (Connector(id="mis-x", name="x", principal=POLICE, carries=[SCHOOL]), "principal"),
    ],
)
def test_the_plan_refuses_a_connector_that_does_not_fit(connector: Connector, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        plan(PARTIES, [connector])


def test_two_connectors_may_not_share_an_id() -> None:
    with pytest.raises(ConfigError, match=r"connector\[1\].*field 'id'.*already"):
        plan(PARTIES, [MIS.model_copy(update={"carries": [SCHOOL]}), MIS])


def test_a_connector_table_in_the_parties_file(tmp_path: Path) -> None:
    path = tmp_path / "parties.toml"
    text = acl_plan.PARTIES_FILE.read_text(encoding="utf-8")
    path.write_text(text + '[[connector]]\nid = "mis-y"\ncarries = ["met-police"]\n')
    _parties, connectors = load_partnership(path)
    assert connectors[-1] == Connector(id="mis-y", name="mis-y", carries=["met-police"])
    path.write_text(text + '[[connector]]\nid = "mis-y"\ncarries = ["met-police"]\nx = 1\n')
    with pytest.raises(ConfigError, match=r"connector\[1\] \('mis-y'\): field 'x'"):
        load_partnership(path)
    path.write_text(text + '[[connector]]\nid = "mis-y"\ncarries = []\n')
    with pytest.raises(ConfigError, match=r"connector\[1\].*carries"):
        load_partnership(path)


def test_the_committed_partnership_has_a_connector_for_two_schools() -> None:
    parties, connectors = load_partnership(acl_plan.PARTIES_FILE)
    assert [(c.id, c.carries) for c in connectors] == [
        ("mis-north-london", ["school-gospel-oak", "school-highbury-fields"])
    ]
    names = {t.name for t in plan(parties, connectors).topics}
    assert "sgx.inbound.mis-north-london" in names
    assert "sgx.inbound.school-gospel-oak" not in names
    assert "sgx.inbound.school-hillside" in names  # a school that is its own connector


_LISTED = """\
Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name=sgx.delivery.school-gone, \
patternType=LITERAL)`:
 \t(principal=User:sgx-consumer-school-gone, host=*, operation=READ, permissionType=ALLOW)

Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name=sgx.schemas, \
patternType=LITERAL)`:
 \t(principal=User:sgx-consumer-la-alpha, host=*, operation=READ, permissionType=ALLOW)
 \t(principal=User:sgx-consumer-school-gone, host=*, operation=READ, permissionType=ALLOW)

Current ACLs for resource `ResourcePattern(resourceType=GROUP, name=sgx-consumer-school-gone, \
patternType=LITERAL)`:
 \t(principal=User:sgx-consumer-school-gone, host=*, operation=READ, permissionType=ALLOW)

Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name=another.app, \
patternType=LITERAL)`:
 \t(principal=User:someone-else, host=*, operation=WRITE, permissionType=ALLOW)
"""


def test_the_script_revokes_what_an_earlier_plan_granted_and_nothing_else(
    the_plan: Plan, tmp_path: Path
) -> None:
    """Run the generated script against Kafka tools that list a broker's ACLs as an earlier
    plan left them (a school moved behind a connector kept its consumer's ACLs) and record
    what the script removes: only those on the exchange's topics and groups that this plan
    does not grant; never another application's."""
    bin_dir, sasl = tmp_path / "bin", tmp_path / "sasl"
    bin_dir.mkdir()
    sasl.mkdir()
    (tmp_path / "listed").write_text(_LISTED)
    removed = tmp_path / "removed"
    (bin_dir / "kafka-acls.sh").write_text(
        "#!/bin/bash\n"
        f'if [[ " $* " == *" --list "* ]]; then cat {tmp_path / "listed"}; fi\n'
        f'if [[ " $* " == *" --remove "* ]]; then echo "$*" >> {removed}; fi\n'
    )
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        (bin_dir / tool).write_text("#!/bin/bash\nexit 0\n")
    for made in bin_dir.iterdir():
        made.chmod(0o755)
    for name in the_plan.principals:
        (sasl / f"{name}.password").write_text("not-a-secret\n")
    script = tmp_path / "apply.sh"
    script.write_text(acl_plan.shell_script(the_plan))
    subprocess.run(
        ["bash", str(script)],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "KAFKA_BIN": str(bin_dir), "SASL_DIR": str(sasl)},
    )
    revoked = [line.split("--allow-principal ")[1] for line in removed.read_text().splitlines()]
    assert sorted(revoked) == sorted(
        [
            "User:sgx-consumer-school-gone --operation Read --resource-pattern-type literal"
            " --topic sgx.delivery.school-gone",
            "User:sgx-consumer-school-gone --operation Read --resource-pattern-type literal"
            " --topic sgx.schemas",
            "User:sgx-consumer-school-gone --operation Read --resource-pattern-type literal"
            " --group sgx-consumer-school-gone",
        ]
    )
