//! Smoke test of the integration-test support code: a moto server starts, the
//! example platform is seeded into it, and boto3 sees it through the real API.

mod support;

use support::{aws_python, seed_platform, MotoServer};

#[test]
fn moto_starts_and_seeds() {
    let moto = MotoServer::start();
    seed_platform(&moto.endpoint);

    let desired = aws_python(
        &moto.endpoint,
        r#"
        ng = eks.describe_nodegroup(clusterName="platform-prod", nodegroupName="general")["nodegroup"]
        print(ng["scalingConfig"]["desiredSize"])
        "#,
    );
    assert_eq!(desired, "4");

    let db = aws_python(
        &moto.endpoint,
        "db = rds.describe_db_instances(DBInstanceIdentifier='platform-postgres-prod')['DBInstances'][0]\n\
         print(db['DBInstanceIdentifier'], db['Engine'], db['DBInstanceStatus'])",
    );
    assert_eq!(db, "platform-postgres-prod postgres available");

    // Seeding again leaves things as they are; reset empties the server.
    seed_platform(&moto.endpoint);
    let groups = aws_python(
        &moto.endpoint,
        "print(json.dumps(sorted(eks.list_nodegroups(clusterName='platform-prod')['nodegroups'])))",
    );
    assert_eq!(groups, r#"["batch", "general"]"#);
    moto.reset();
    assert_eq!(
        aws_python(
            &moto.endpoint,
            "print(len(eks.list_clusters()['clusters']))"
        ),
        "0"
    );
}
