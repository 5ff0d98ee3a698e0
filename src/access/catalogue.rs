//! The built-in permission catalogue: every role permission Struct PIM ships with
//! (`seeds/role-permissions.md`), each under a stable key that configs, claims and the PIM
//! share, plus [`PermissionKey`], the parsed form of such a key.
//!
//! Keys are `<group>.<action>` in lowercase snake case (`products.create`,
//! `categories.browse_catalogues`). They are pimgate's contract, not Struct's display names:
//! a name may be reworded in the PIM without any config or claim changing. Installations add
//! their own permissions in `[access.permissions]` (see [`super::model`]).

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A permission key: two or more dot-separated parts of `[a-z0-9_]`, such as
/// `products.create` or `custom.approve_texts`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PermissionKey(String);

/// A string that is not a permission key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a permission key: use two or more dot-separated parts of lowercase letters, digits and '_' (e.g. \"products.create\")"
)]
pub struct InvalidPermissionKey(pub String);

impl PermissionKey {
    /// Parses a key of the form `[a-z0-9_]+(\.[a-z0-9_]+)+`.
    pub fn parse(raw: &str) -> Result<Self, InvalidPermissionKey> {
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let mut parts = raw.split('.');
        let first_ok = parts.next().is_some_and(part_ok);
        let mut rest = 0usize;
        let rest_ok = parts.all(|p| {
            rest += 1;
            part_ok(p)
        });
        if first_ok && rest_ok && rest >= 1 {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidPermissionKey(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The group part (before the first dot).
    pub fn group(&self) -> &str {
        self.0.split('.').next().unwrap_or_default()
    }
}

impl TryFrom<String> for PermissionKey {
    type Error = InvalidPermissionKey;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<PermissionKey> for String {
    fn from(k: PermissionKey) -> Self {
        k.0
    }
}

/// Lets maps keyed by [`PermissionKey`] be searched with a `&str` (ordering and equality are
/// those of the inner string).
impl Borrow<str> for PermissionKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PermissionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One permission a role can hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub key: PermissionKey,
    /// The name the PIM shows ("Create product").
    pub name: String,
    /// The PIM's permission group ("Products").
    pub group: String,
    pub description: String,
}

/// Every built-in permission, in the seed's order (grouped as the PIM groups them).
pub fn builtin() -> Vec<Permission> {
    BUILTIN
        .iter()
        .filter_map(|&(key, group, name, description)| {
            // Every key below parses (tested); a typo would drop the entry and fail the count.
            PermissionKey::parse(key).ok().map(|key| Permission {
                key,
                name: name.to_owned(),
                group: group.to_owned(),
                description: description.to_owned(),
            })
        })
        .collect()
}

/// `(key, group, name, description)`, names and descriptions verbatim from the seed.
#[rustfmt::skip]
const BUILTIN: &[(&str, &str, &str, &str)] = &[
    // General
    ("general.edit_personal_dashboard", "General", "Edit personal dashboard", "Allow users to edit the widget layout an content on their personal dashboard."),
    ("general.export_data", "General", "Export data", "Allow users to export data of all entity types, ie. global lists, products, categories, variants, variant groups and assets."),
    ("general.import_data", "General", "Import data", "Allow users to import data of all entity types, ie. global lists, products, categories, variants, variant groups and assets."),
    ("general.manage_global_saved_searches", "General", "Manage global saved searches", "Allow users to manage global saved searches that are shared with all users."),
    ("general.manage_personal_saved_searches", "General", "Manage personal saved searches", "Allow users to create and manage personal saved searches, which are only visible to the user who created them."),
    ("general.rollback_revision_changes", "General", "Rollback revision changes", "Allow users to rollback changes made in a revision on an entity, ie. global list values, products, categories, variants, variant groups and assets."),
    ("general.view_revision_log", "General", "View revision log", "Allows users to view the revision log of entities, ie. global list values, products, categories, variants, variant groups and assets."),
    // Categories
    ("categories.browse_catalogues", "Categories", "Browse catalogues", "Allows users to browse the catalogues in left side menu."),
    ("categories.bulk_update", "Categories", "Bulk update categories", "Allows users to bulk update category values for multiple categories at once."),
    ("categories.copy", "Categories", "Copy category", "Allows users to copy categories in the catalogues."),
    ("categories.create", "Categories", "Create category", "Allow users to create new categories in catalogues and sub categories of other categories."),
    ("categories.delete", "Categories", "Delete category", "Allows users to delete categories in completely from the system."),
    ("categories.edit_attributes", "Categories", "Edit category attributes", "Allows users to edit all category attributes, which have not been configured to require a specific permission."),
    ("categories.edit_localized_attributes", "Categories", "Edit category localized attributes", "Allows users to edit localized attributes, which have not been configured to require a specific permission."),
    ("categories.edit_segmented_attributes", "Categories", "Edit category segmented attributes", "Allows users to edit segmented attributes, which have not been configured to require a specific permission."),
    ("categories.move", "Categories", "Move category", "Allows users to move categories to other catalogues or sub categories."),
    ("categories.set_business_units", "Categories", "Set category business units", "Allow users set business units on categories to restrict access to the category."),
    ("categories.sort", "Categories", "Sort categories", "Allow users to sort categories in catalogues as well as sub categories."),
    // Products
    ("products.archive", "Products", "Archive/un-archive products", "Allow users to archive or unarchive products, making them unavailable outside the system and hidden from searches as default."),
    ("products.bulk_update", "Products", "Bulk update products", "Allows users to bulk update product values for multiple products at once."),
    ("products.change_structure", "Products", "Change product structure", "Allow users to change product structure of existing products to another product structure."),
    ("products.classify", "Products", "Classify products", "Allow users to classify products in categories within the category structure."),
    ("products.copy", "Products", "Copy product", "Allow users to create new products by copying an existing product in the system. Create product permission is not required to copy products."),
    ("products.create", "Products", "Create product", "Allow users to create new products from scratch directly in the system."),
    ("products.delete", "Products", "Delete product", "Allows users to delete products completely from the system."),
    ("products.edit_attributes", "Products", "Edit product attributes", "Allows users to edit all product attributes, which have not been configured to require a specific permission."),
    ("products.edit_localized_attributes", "Products", "Edit product localized attributes", "Allows users to edit localized attributes, which have not been configured to require a specific permission."),
    ("products.edit_segmented_attributes", "Products", "Edit product segmented attributes", "Allows users to edit segmented attributes, which have not been configured to require a specific permission."),
    ("products.edit_variation_definition", "Products", "Edit variation definition", "Allows users to edit variation definition."),
    ("products.merge", "Products", "Merge products", "Allows users to merge multiple products into a single product with a variant for each merged product."),
    ("products.set_business_units", "Products", "Set product business units", "Allow users set business units on products to restrict access to the product."),
    ("products.view", "Products", "View products", "Allows users to view products and variants in PIM."),
    // Variant groups
    ("variant_groups.archive", "Variant groups", "Archive/un-archive variant groups", "Allow users to archive or unarchive variant groups, making them unavailable outside the system and hidden from searches as default."),
    ("variant_groups.bulk_update", "Variant groups", "Bulk update variant groups", "Allows users to bulk update variant groups values for multiple variant groups at once."),
    ("variant_groups.create", "Variant groups", "Create variant group", "Allow users to create new variant groups from scratch directly in the system."),
    ("variant_groups.delete", "Variant groups", "Delete variant group", "Allows users to delete variant groups completely from the system."),
    ("variant_groups.edit_attributes", "Variant groups", "Edit variant group attributes", "Allows users to edit all variant group attributes, which have not been configured to require a specific permission."),
    ("variant_groups.edit_localized_attributes", "Variant groups", "Edit variant group localized attributes", "Allows users to edit localized attributes, which have not been configured to require a specific permission."),
    ("variant_groups.edit_segmented_attributes", "Variant groups", "Edit variant group segmented attributes", "Allows users to edit segmented attributes, which have not been configured to require a specific permission."),
    ("variant_groups.set_business_units", "Variant groups", "Set variant group business units", "Allow users set business units on variant groups to restrict access to the variant group."),
    // Variants
    ("variants.archive", "Variants", "Archive/un-archive variants", "Allow users to archive or unarchive variants, making them unavailable outside the system and hidden from searches as default."),
    ("variants.bulk_update", "Variants", "Bulk update variants", "Allows users to bulk update variant values for multiple variants at once."),
    ("variants.copy", "Variants", "Copy variant", "Allow users to create new variants by copying an existing variant in the system. Create variant permission is not required to copy variants."),
    ("variants.create", "Variants", "Create variant", "Allow users to create new variants from scratch directly in the system."),
    ("variants.delete", "Variants", "Delete variant", "Allows users to delete variants completely from the system."),
    ("variants.edit_attributes", "Variants", "Edit variant attributes", "Allows users to edit all variant attributes, which have not been configured to require a specific permission."),
    ("variants.edit_localized_attributes", "Variants", "Edit variant localized attributes", "Allows users to edit localized attributes, which have not been configured to require a specific permission."),
    ("variants.edit_segmented_attributes", "Variants", "Edit variant segmented attributes", "Allows users to edit segmented attributes, which have not been configured to require a specific permission."),
    ("variants.generate", "Variants", "Generate variants", "Allow users to generate variants by defining combinations of variant attributes."),
    ("variants.move", "Variants", "Move variant", "Allows users to move variants to other products in the system."),
    ("variants.set_business_units", "Variants", "Set variant business units", "Allow users set business units on variants to restrict access to the variant."),
    // Assets
    ("assets.bulk_update", "Assets", "Bulk update assets", "Allows users to bulk update asset values for multiple assets at once."),
    ("assets.create", "Assets", "Create asset", "Allow users to upload new assets to folders in the Media Archive."),
    ("assets.delete", "Assets", "Delete asset", "Allows users to delete assets completely from the system."),
    ("assets.edit_attributes", "Assets", "Edit asset attributes", "Allows users to edit all asset attributes, which have not been configured to require a specific permission."),
    ("assets.edit_localized_attributes", "Assets", "Edit asset localized attributes", "Allows users to edit localized attributes, which have not been configured to require a specific permission."),
    ("assets.edit_segmented_attributes", "Assets", "Edit asset segmented attributes", "Allows users to edit segmented attributes, which have not been configured to require a specific permission."),
    ("assets.manage_files", "Assets", "Manage asset files", "Allows users to upload new file versions to an asset and delete existing file versions."),
    ("assets.move", "Assets", "Move assets", "Allows users to move assets to other folders in the system."),
    ("assets.set_business_units", "Assets", "Set asset business units", "Allow users set business units on assets."),
    // Global lists
    ("global_lists.bulk_update_values", "Global lists", "Bulk update global list values", "Allow users to bulk update values for multiple global list values at once."),
    ("global_lists.create_values", "Global lists", "Create global list values", "Allow users to create new values in global lists in PIM as well as in the Media Archive."),
    ("global_lists.delete_values", "Global lists", "Delete global list values", "Allow users to delete existing global list values in global lists."),
    ("global_lists.edit_localized_values", "Global lists", "Edit global list localized values", "Allow users to edit localized values, which have not been configured to require a specific permission."),
    ("global_lists.edit_segmented_values", "Global lists", "Edit global list segmented values", "Allow users to edit segmented values, which have not been configured to require a specific permission."),
    ("global_lists.edit_values", "Global lists", "Edit global list values", "Allow users to edit all global list values, which have not been configured to require a specific permission."),
    ("global_lists.view_values", "Global lists", "View global list values", "Allow users to view values on all global lists, which have not been configured to require a specific permission."),
    // Tasks
    ("tasks.comment", "Tasks", "Comment on user tasks", "Allow users to comment on user tasks created by themselves or other users."),
    ("tasks.create", "Tasks", "Create user tasks", "Allow users to create user tasks with attached entities."),
    ("tasks.delete_own", "Tasks", "Delete own user tasks", "Allow users to delete their own user tasks, but not user tasks created by other users."),
    ("tasks.delete", "Tasks", "Delete user tasks", "Allow users to delete user tasks in the system."),
    ("tasks.update_own", "Tasks", "Update own user tasks", "Allow users to update information on their own user tasks, but not user tasks created by other users."),
    ("tasks.update", "Tasks", "Update user tasks", "Allow users to update information on any user task no matter who created it."),
    ("tasks.view_all", "Tasks", "View all user tasks", "Allow users to view all user tasks no matter who created them."),
    // User Management
    ("user_management.manage_roles", "User Management", "Manage roles", "Allows users to create new roles, edit which permissions roles have and delete roles."),
    ("user_management.manage_user_groups", "User Management", "Manage user groups", "Allows users to create new user groups, edit what user groups can access and delete user groups."),
    ("user_management.manage_users", "User Management", "Manage users", "Gives access to invite new users, edit roles and user groups on existing users and remove users from the PIM."),
    // Settings
    ("settings.ai_assistant", "Settings", "AI Assistant settings", "Allow users to setup the AI assistant and configure how it should behave."),
    ("settings.azure_service_bus", "Settings", "Azure Service Bus", "Allow users to configure Azure Service Bus connections for integration with other systems."),
    ("settings.delete_attributes", "Settings", "Delete attributes", "Allow users to delete attributes."),
    ("settings.maintenance", "Settings", "Maintenance", "Allow users permission to start maintenance background jobs in the system."),
    ("settings.manage_api_settings", "Settings", "Manage API settings", "Allows users to create and manage API keys for accessing the PIM API."),
    ("settings.manage_archive_reasons", "Settings", "Manage archive reasons", "Allow users to create, edit and delete archive reasons available when archiving entities."),
    ("settings.manage_asset_types", "Settings", "Manage asset types", "Allow users to create, edit and delete asset types in the system."),
    ("settings.manage_attribute_groups", "Settings", "Manage attributes groups", "Allow users to create, edit and delete attribute groups."),
    ("settings.manage_attribute_indexing", "Settings", "Manage attribute indexing", "Allow users to configure cross indexing of attribute values between entity types."),
    ("settings.manage_attribute_scopes", "Settings", "Manage attribute scopes", "Allow users to create, edit and deleted attribute scopes."),
    ("settings.manage_attributes", "Settings", "Manage attributes", "Allow users to create and edit attributes."),
    ("settings.manage_business_rules", "Settings", "Manage business rules", "Allow users to configure business rules to automate processes or govern data quality in the system."),
    ("settings.manage_business_units", "Settings", "Manage business units", "Allow users to create, edit and delete business units to restrict access to entities in the system."),
    ("settings.manage_catalogues", "Settings", "Manage catalogues", "Allow users to create new catalogues, edit data models on existing ones and delete catalogues."),
    ("settings.manage_dimensions", "Settings", "Manage dimensions", "Allow users to create, edit and delete attribute dimensions."),
    ("settings.manage_enrichment_insights", "Settings", "Manage enrichment insights", "Allow users to create and manage enrichment insights configurations in the system."),
    ("settings.manage_external_dam", "Settings", "Manage external DAM", "Allow users to configure external DAM systems for integration with the PIM."),
    ("settings.manage_file_mappings", "Settings", "Manage file mappings", "Allow users to create and manage file mappings."),
    ("settings.manage_global_list_configurations", "Settings", "Manage global list configurations", "Allow users to create, edit and delete global list configurations."),
    ("settings.manage_languages", "Settings", "Manage languages", "Allow users to create, edit and delete available languages in the system."),
    ("settings.manage_permissions", "Settings", "Manage permissions", "Allow users to create, edit and delete custom permissions and permission groups to use for role based access control."),
    ("settings.manage_product_structures", "Settings", "Manage product structures", "Allow users to create, edit and delete product structures in the system."),
    ("settings.manage_shared_dashboards", "Settings", "Manage shared dashboards", "Allow users to configure globally shared dashboards which users can add to their personal dashboard."),
    ("settings.manage_webhooks", "Settings", "Manage webhooks", "Allow users to create, edit and delete webhook configurations for integrations with other systems."),
    ("settings.manage_workflows", "Settings", "Manage workflows", "Allow users to create, edit and delete workflows to control the lifecycle of entities in the system."),
    // Publications
    ("publications.export", "Publications", "Export publications", "Allow users to export publications."),
    ("publications.manage_templates", "Publications", "Manage publication templates", "Allow users to create, update and delete publication templates."),
    ("publications.manage", "Publications", "Manage publications", "Allows users to manage publications in PIM."),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The seed's tables hold 105 rows: General 7, Categories 11, Products 14, Variant groups 8,
    /// Variants 11, Assets 9, Global lists 7, Tasks 7, User Management 3, Settings 25,
    /// Publications 3 (each table's first row is a permission too: the seed's tables have no
    /// header row of their own).
    const SEED_ROWS: usize = 105;

    #[test]
    fn the_catalogue_holds_every_seed_row_once() {
        let all = builtin();
        assert_eq!(BUILTIN.len(), SEED_ROWS);
        assert_eq!(all.len(), SEED_ROWS, "every built-in key parses");
        let keys: BTreeSet<&str> = all.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys.len(), SEED_ROWS, "keys are unique");
        let names: BTreeSet<(&str, &str)> = all
            .iter()
            .map(|p| (p.group.as_str(), p.name.as_str()))
            .collect();
        assert_eq!(names.len(), SEED_ROWS, "names are unique within a group");
        let per_group = |g: &str| all.iter().filter(|p| p.group == g).count();
        for (group, n) in [
            ("General", 7),
            ("Categories", 11),
            ("Products", 14),
            ("Variant groups", 8),
            ("Variants", 11),
            ("Assets", 9),
            ("Global lists", 7),
            ("Tasks", 7),
            ("User Management", 3),
            ("Settings", 25),
            ("Publications", 3),
        ] {
            assert_eq!(per_group(group), n, "{group}");
        }
    }

    #[test]
    fn keys_follow_their_group() {
        for p in builtin() {
            let expected = p.group.to_lowercase().replace(' ', "_");
            assert_eq!(p.key.group(), expected, "{}", p.key);
            assert!(!p.description.is_empty(), "{}", p.key);
        }
    }

    #[test]
    fn well_known_keys_carry_their_seed_names() {
        let all = builtin();
        let name = |k: &str| {
            all.iter()
                .find(|p| p.key.as_str() == k)
                .map(|p| p.name.as_str())
        };
        for (key, expected) in [
            ("products.create", "Create product"),
            ("products.delete", "Delete product"),
            ("products.view", "View products"),
            ("categories.browse_catalogues", "Browse catalogues"),
            ("general.export_data", "Export data"),
            ("user_management.manage_roles", "Manage roles"),
            ("settings.manage_webhooks", "Manage webhooks"),
            (
                "settings.manage_attribute_groups",
                "Manage attributes groups",
            ),
            ("publications.export", "Export publications"),
            ("tasks.delete_own", "Delete own user tasks"),
        ] {
            assert_eq!(name(key), Some(expected), "{key}");
        }
    }

    #[test]
    fn permission_keys_parse_strictly() {
        for ok in ["a.b", "products.create", "custom.approve_texts", "x1.y_2.z"] {
            assert!(PermissionKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "products",
            "Products.create",
            "products.",
            ".create",
            "a..b",
            "a.b-c",
            "a. b",
        ] {
            assert!(PermissionKey::parse(bad).is_err(), "{bad:?}");
        }
        let k: PermissionKey = serde_json::from_str("\"products.view\"").unwrap();
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"products.view\"");
        assert!(serde_json::from_str::<PermissionKey>("\"Products\"").is_err());
    }
}
