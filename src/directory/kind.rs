//! What kinds of resources the directory holds, as values ([`ResourceKind`], [`MemberKind`])
//! and as types ([`UserKind`], [`GroupKind`]) for code written once for both.

/// The two resource types the directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    /// The resource type name (`meta.resourceType`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    /// The collection path segment (`/Users`, `/Groups`).
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a member of a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        self.resource().as_str()
    }

    /// The resource kind a member of this kind is.
    pub fn resource(self) -> ResourceKind {
        match self {
            MemberKind::User => ResourceKind::User,
            MemberKind::Group => ResourceKind::Group,
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        if raw.eq_ignore_ascii_case("user") {
            Some(MemberKind::User)
        } else if raw.eq_ignore_ascii_case("group") {
            Some(MemberKind::Group)
        } else {
            None
        }
    }
}

/// What distinguishes the documents of one resource kind.
pub trait Kind: Send + Sync + 'static {
    const KIND: ResourceKind;
    /// The attribute every document of this kind carries as a non-blank string
    /// (`userName`, `displayName`).
    const REQUIRED: &'static str;
}

/// Marker of user documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKind {}

/// Marker of group documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {}

impl Kind for UserKind {
    const KIND: ResourceKind = ResourceKind::User;
    const REQUIRED: &'static str = "userName";
}

impl Kind for GroupKind {
    const KIND: ResourceKind = ResourceKind::Group;
    const REQUIRED: &'static str = "displayName";
}
