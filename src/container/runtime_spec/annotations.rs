//! The annotations that tell hooks and tools what the container is: a
//! CRI container (not a sandbox), of which pod, named how, from which
//! image.

use oci_spec::runtime::Spec;

use super::base::annotations_of;
use super::SpecInputs;
use crate::container::error::ContainerError;

pub fn with_annotations(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let rec = i.rec;
    annotations_of(spec).extend(
        [
            ("io.kubernetes.cri.container-type", "container"),
            ("io.kubernetes.cri.sandbox-id", i.pod.id.as_str()),
            (
                "io.kubernetes.cri.container-name",
                rec.spec.metadata.name.as_str(),
            ),
            ("io.kubernetes.cri.image-name", rec.image_name.as_str()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::container::runtime_spec::base::{annotations_of, empty_spec};
    use crate::container::runtime_spec::test_support::*;

    #[test]
    fn with_annotations_names_the_container_and_keeps_others() {
        let f = Fixture::plain();
        let j = run(with_annotations, &f.inputs());
        assert_eq!(
            j["annotations"],
            json!({
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.sandbox-id": "sb0123",
                "io.kubernetes.cri.container-name": "app",
                "io.kubernetes.cri.image-name": "docker.io/library/busybox:1.36",
            })
        );
        assert_changes_only(with_annotations, &f.inputs(), &["/annotations"]);
        let mut spec = empty_spec();
        annotations_of(&mut spec).insert("other".into(), "kept".into());
        with_annotations(&f.inputs(), &mut spec).unwrap();
        assert_eq!(spec.annotations().as_ref().unwrap()["other"], "kept");
        assert_eq!(spec.annotations().as_ref().unwrap().len(), 5);
    }
}
