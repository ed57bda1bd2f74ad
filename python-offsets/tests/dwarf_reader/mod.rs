//! A small reader of ELF files and their DWARF types for `tests/dwarf.rs`: types are
//! found by their C name, and a compilation unit is parsed only when a wanted name
//! has not turned up in the units before it.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use gimli::{AttributeValue, EndianSlice, LittleEndian, UnitOffset};
use goblin::elf::Elf;

/// Where a number is found in the DWARF. Type names are spelled as
/// in C: `struct _ts` is a struct tag, `PyCodeObject` a typedef.
#[derive(Debug, Clone, Copy)]
pub enum At {
    /// The offset of a member. The path (`ceval.gil.locked`) goes through nested
    /// structs and unions; anonymous members are looked through.
    Member(&'static str, &'static str),
    /// The offset of a member that must be a pointer to the third type. A member of
    /// that name pointing at another type counts as absent.
    PointerTo(&'static str, &'static str, &'static str),
    /// `sizeof` the type.
    Size(&'static str),
    /// A member pointing straight at an array of pointers, so the array starts at 0.
    PointerArray(&'static str, &'static str),
    /// The `n`-th pointer-sized word before an object's `PyGC_Head` (1 is the word
    /// right before it), as a negative offset from the object:
    /// `-(sizeof(PyGC_Head) + n * sizeof(void *))`. CPython keeps an object's GC
    /// header right before it and the managed-dict pre-header before that.
    BeforeGcHead(u64),
    /// The field has no place in this version, for the reason given; the table must
    /// say `None`.
    Nowhere(&'static str),
}

use At::{BeforeGcHead, Member, Nowhere, PointerArray, PointerTo, Size};

/// A mapped ELF file.
pub struct Binary {
    pub data: memmap2::Mmap,
}

impl Binary {
    pub fn open(path: &Path) -> Result<Binary, String> {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: the interpreters' files are not written while the tests run.
        let data = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| format!("cannot map {}: {e}", path.display()))?;
        Ok(Binary { data })
    }

    pub fn elf(&self) -> Result<Elf<'_>, String> {
        Elf::parse(&self.data).map_err(|e| format!("not an ELF file: {e}"))
    }

    /// The first `len` bytes of `_PyRuntime` as the file initialises them.
    pub fn py_runtime_bytes(&self, elf: &Elf<'_>, len: usize) -> Result<Vec<u8>, String> {
        let section = elf
            .section_headers
            .iter()
            .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".PyRuntime"))
            .ok_or("no .PyRuntime section")?;
        let symbol = elf
            .dynsyms
            .iter()
            .find(|s| elf.dynstrtab.get_at(s.st_name) == Some("_PyRuntime"))
            .ok_or("no _PyRuntime symbol")?;
        let within = symbol
            .st_value
            .checked_sub(section.sh_addr)
            .filter(|&off| off + len as u64 <= section.sh_size)
            .ok_or("_PyRuntime is not inside .PyRuntime")?;
        let start = usize::try_from(section.sh_offset + within).map_err(|e| e.to_string())?;
        self.data
            .get(start..start + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "_PyRuntime lies past the end of the file".to_string())
    }
}

fn section_data<'a>(elf: &Elf<'a>, data: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, String> {
    let Some(header) = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(name))
    else {
        return Ok(None);
    };
    if header.sh_flags & u64::from(goblin::elf::section_header::SHF_COMPRESSED) != 0 {
        return Err(format!(
            "{name} is compressed, which this test does not read"
        ));
    }
    let start = usize::try_from(header.sh_offset).map_err(|e| e.to_string())?;
    let len = usize::try_from(header.sh_size).map_err(|e| e.to_string())?;
    data.get(start..start.saturating_add(len))
        .map(Some)
        .ok_or_else(|| format!("{name} lies past the end of the file"))
}

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// A type's debugging entry: the unit it is in and its offset there.
#[derive(Debug, Clone, Copy)]
struct TypeRef {
    unit: usize,
    offset: UnitOffset,
}

/// The C name spaces a type name can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Space {
    Struct,
    Union,
    Typedef,
}

/// A member of a struct or union: its name (`None` for an anonymous one), offset
/// and type (`None` for `void`).
type MemberDie = (Option<String>, u64, Option<TypeRef>);

/// What the DWARF says about an [`At`].
#[derive(Debug)]
pub enum Found {
    /// An offset (negative for [`At::BeforeGcHead`]) or a size.
    At(i128),
    /// It does not exist; the reason is for messages.
    Absent(String),
}

/// Types of one ELF file's DWARF, found by name. Compilation units are parsed one at a
/// time, only until the wanted name turns up.
pub struct Types<'a> {
    dwarf: gimli::Dwarf<Slice<'a>>,
    headers: gimli::DebugInfoUnitHeadersIter<Slice<'a>>,
    units: Vec<gimli::Unit<Slice<'a>>>,
    /// The first complete struct or union of each tag, and the first typedef of each
    /// name, in the units parsed so far.
    named: HashMap<(Space, &'a [u8]), TypeRef>,
}

fn dwarf_error(e: gimli::Error) -> String {
    format!("bad DWARF: {e}")
}

impl<'a> Types<'a> {
    /// The file's DWARF, or `None` when it has no `.debug_info`.
    pub fn load(elf: &Elf<'a>, data: &'a [u8]) -> Result<Option<Types<'a>>, String> {
        if section_data(elf, data, ".debug_info")?.is_none() {
            return Ok(None);
        }
        let dwarf = gimli::Dwarf::load(|id| {
            section_data(elf, data, id.name())
                .map(|s| EndianSlice::new(s.unwrap_or_default(), LittleEndian))
        })?;
        let headers = dwarf.units();
        Ok(Some(Types {
            dwarf,
            headers,
            units: Vec::new(),
            named: HashMap::new(),
        }))
    }

    /// Parses the next compilation unit's top-level types; false when none is left.
    fn scan_next_unit(&mut self) -> Result<bool, String> {
        let Some(header) = self.headers.next().map_err(dwarf_error)? else {
            return Ok(false);
        };
        let unit = self.dwarf.unit(header).map_err(dwarf_error)?;
        let index = self.units.len();
        {
            let mut tree = unit.entries_tree(None).map_err(dwarf_error)?;
            let root = tree.root().map_err(dwarf_error)?;
            let mut children = root.children();
            while let Some(child) = children.next().map_err(dwarf_error)? {
                let entry = child.entry();
                let space = match entry.tag() {
                    gimli::DW_TAG_structure_type => Space::Struct,
                    gimli::DW_TAG_union_type => Space::Union,
                    gimli::DW_TAG_typedef => Space::Typedef,
                    _ => continue,
                };
                if space != Space::Typedef && is_declaration(entry) {
                    continue;
                }
                let Some(name) = entry.attr_value(gimli::DW_AT_name) else {
                    continue;
                };
                let name = self.dwarf.attr_string(&unit, name).map_err(dwarf_error)?;
                self.named.entry((space, name.slice())).or_insert(TypeRef {
                    unit: index,
                    offset: entry.offset(),
                });
            }
        }
        self.units.push(unit);
        Ok(true)
    }

    /// The type spelled `struct X`, `union X` or `X` (a typedef), parsing more units
    /// until it is found.
    fn find(&mut self, spelled: &str) -> Result<Option<TypeRef>, String> {
        let (space, name) = if let Some(tag) = spelled.strip_prefix("struct ") {
            (Space::Struct, tag)
        } else if let Some(tag) = spelled.strip_prefix("union ") {
            (Space::Union, tag)
        } else {
            (Space::Typedef, spelled)
        };
        loop {
            if let Some(found) = self.named.get(&(space, name.as_bytes())) {
                return Ok(Some(*found));
            }
            if !self.scan_next_unit()? {
                return Ok(None);
            }
        }
    }

    fn entry(&self, t: TypeRef) -> Result<gimli::DebuggingInformationEntry<Slice<'a>>, String> {
        self.units[t.unit].entry(t.offset).map_err(dwarf_error)
    }

    fn name(
        &self,
        t: TypeRef,
        entry: &gimli::DebuggingInformationEntry<Slice<'a>>,
    ) -> Result<Option<String>, String> {
        match entry.attr_value(gimli::DW_AT_name) {
            None => Ok(None),
            Some(value) => {
                let name = self
                    .dwarf
                    .attr_string(&self.units[t.unit], value)
                    .map_err(dwarf_error)?;
                Ok(Some(name.to_string_lossy().into_owned()))
            }
        }
    }

    /// The type an entry's `DW_AT_type` refers to; `None` for `void`.
    fn type_of(
        &self,
        t: TypeRef,
        entry: &gimli::DebuggingInformationEntry<Slice<'a>>,
    ) -> Result<Option<TypeRef>, String> {
        match entry.attr_value(gimli::DW_AT_type) {
            None => Ok(None),
            Some(AttributeValue::UnitRef(offset)) => Ok(Some(TypeRef {
                unit: t.unit,
                offset,
            })),
            Some(other) => Err(format!(
                "a type reference this test does not follow: {other:?}"
            )),
        }
    }

    /// Follows typedefs and qualifiers; the C names met on the way (typedef names,
    /// `struct X`) are pushed onto `names`.
    fn peel(&self, mut t: TypeRef, names: &mut Vec<String>) -> Result<Option<TypeRef>, String> {
        loop {
            let entry = self.entry(t)?;
            let tag = entry.tag();
            let name = self.name(t, &entry)?;
            match tag {
                gimli::DW_TAG_typedef => names.extend(name),
                gimli::DW_TAG_const_type
                | gimli::DW_TAG_volatile_type
                | gimli::DW_TAG_atomic_type
                | gimli::DW_TAG_restrict_type => {}
                gimli::DW_TAG_structure_type => {
                    names.extend(name.map(|n| format!("struct {n}")));
                    return Ok(Some(t));
                }
                gimli::DW_TAG_union_type => {
                    names.extend(name.map(|n| format!("union {n}")));
                    return Ok(Some(t));
                }
                _ => return Ok(Some(t)),
            }
            match self.type_of(t, &entry)? {
                Some(next) => t = next,
                None => return Ok(None),
            }
        }
    }

    /// The complete struct or union `t` names (through typedefs, qualifiers and
    /// declarations), or `None` when it is not a struct or union.
    fn complete(&mut self, t: TypeRef) -> Result<Option<TypeRef>, String> {
        let Some(t) = self.peel(t, &mut Vec::new())? else {
            return Ok(None);
        };
        let entry = self.entry(t)?;
        let prefix = match entry.tag() {
            gimli::DW_TAG_structure_type => "struct",
            gimli::DW_TAG_union_type => "union",
            _ => return Ok(None),
        };
        if !is_declaration(&entry) {
            return Ok(Some(t));
        }
        let name = self
            .name(t, &entry)?
            .ok_or("a declaration without a name")?;
        let spelled = format!("{prefix} {name}");
        self.find(&spelled)?
            .map(Some)
            .ok_or_else(|| format!("{spelled} is declared but never defined"))
    }

    /// The members of a complete struct or union.
    fn members(&self, t: TypeRef) -> Result<Vec<MemberDie>, String> {
        let unit = &self.units[t.unit];
        let mut tree = unit.entries_tree(Some(t.offset)).map_err(dwarf_error)?;
        let root = tree.root().map_err(dwarf_error)?;
        let mut children = root.children();
        let mut members = Vec::new();
        while let Some(child) = children.next().map_err(dwarf_error)? {
            let entry = child.entry();
            if entry.tag() != gimli::DW_TAG_member {
                continue;
            }
            let offset = match (
                entry.attr_value(gimli::DW_AT_data_member_location),
                entry.attr_value(gimli::DW_AT_data_bit_offset),
            ) {
                (Some(location), _) => location.udata_value().ok_or_else(|| {
                    format!("a member location this test does not read: {location:?}")
                })?,
                (None, Some(bits)) => bits.udata_value().map_or(0, |b| b / 8),
                (None, None) => 0,
            };
            let name = self.name(t, entry)?;
            members.push((name, offset, self.type_of(t, entry)?));
        }
        Ok(members)
    }

    /// The offset and type of `name` in the struct or union `t`, looking through
    /// anonymous members.
    fn member(&mut self, t: TypeRef, name: &str) -> Result<Option<(u64, Option<TypeRef>)>, String> {
        let members = self.members(t)?;
        if let Some((_, offset, ty)) = members.iter().find(|m| m.0.as_deref() == Some(name)) {
            return Ok(Some((*offset, *ty)));
        }
        for (_, offset, ty) in members.iter().filter(|m| m.0.is_none()) {
            let Some(inner) = ty.map(|ty| self.complete(ty)).transpose()?.flatten() else {
                continue;
            };
            if let Some((inner_offset, inner_ty)) = self.member(inner, name)? {
                return Ok(Some((offset + inner_offset, inner_ty)));
            }
        }
        Ok(None)
    }

    /// The offset and type of a `.`-separated member path in the type spelled `ty`.
    fn path(
        &mut self,
        ty: &str,
        path: &str,
    ) -> Result<Result<(u64, Option<TypeRef>), String>, String> {
        let Some(root) = self.find(ty)? else {
            return Ok(Err(format!("no {ty} in the DWARF")));
        };
        let mut offset = 0;
        let mut current = Some(root);
        let mut walked = ty.to_string();
        for segment in path.split('.') {
            let Some(st) = current.map(|c| self.complete(c)).transpose()?.flatten() else {
                return Ok(Err(format!("{walked} is not a struct or union")));
            };
            let Some((member_offset, member_ty)) = self.member(st, segment)? else {
                return Ok(Err(format!("{walked} has no member {segment}")));
            };
            offset += member_offset;
            current = member_ty;
            walked = format!("{walked}.{segment}");
        }
        Ok(Ok((offset, current)))
    }

    /// The pointee of a pointer type (through typedefs and qualifiers), or `None`
    /// when `t` is not a pointer.
    fn pointee(&self, t: Option<TypeRef>) -> Result<Option<Option<TypeRef>>, String> {
        let Some(t) = t else { return Ok(None) };
        let Some(t) = self.peel(t, &mut Vec::new())? else {
            return Ok(None);
        };
        let entry = self.entry(t)?;
        if entry.tag() != gimli::DW_TAG_pointer_type {
            return Ok(None);
        }
        Ok(Some(self.type_of(t, &entry)?))
    }

    /// `sizeof` the struct or union spelled `ty` and the size of an address in its
    /// compilation unit, or `None` when the DWARF has no such type.
    fn size_of(&mut self, ty: &str) -> Result<Option<(u64, u64)>, String> {
        let Some(t) = self.find(ty)? else {
            return Ok(None);
        };
        let t = self
            .complete(t)?
            .ok_or_else(|| format!("{ty} is not a struct or union"))?;
        let entry = self.entry(t)?;
        let size = entry
            .attr_value(gimli::DW_AT_byte_size)
            .and_then(|s| s.udata_value())
            .ok_or_else(|| format!("{ty} has no size"))?;
        let address_size = u64::from(self.units[t.unit].header.address_size());
        Ok(Some((size, address_size)))
    }

    /// What the DWARF says about `at`.
    pub fn locate(&mut self, at: At) -> Result<Found, String> {
        Ok(match at {
            Member(ty, path) => match self.path(ty, path)? {
                Ok((offset, _)) => Found::At(offset.into()),
                Err(why) => Found::Absent(why),
            },
            PointerTo(ty, path, target) => match self.path(ty, path)? {
                Err(why) => Found::Absent(why),
                Ok((offset, member_ty)) => {
                    let mut names = Vec::new();
                    if let Some(Some(pointee)) = self.pointee(member_ty)? {
                        self.peel(pointee, &mut names)?;
                    }
                    if names.iter().any(|n| n == target) {
                        Found::At(offset.into())
                    } else {
                        Found::Absent(format!(
                            "{ty}.{path} is not a {target} * (it points to {names:?})"
                        ))
                    }
                }
            },
            Size(ty) => match self.size_of(ty)? {
                Some((size, _)) => Found::At(size.into()),
                None => Found::Absent(format!("no {ty} in the DWARF")),
            },
            PointerArray(ty, path) => match self.path(ty, path)? {
                Err(why) => Found::Absent(why),
                Ok((_, member_ty)) => {
                    let element = self.pointee(member_ty)?.flatten();
                    if self.pointee(element)?.is_some() {
                        Found::At(0)
                    } else {
                        Found::Absent(format!(
                            "{ty}.{path} does not point at an array of pointers"
                        ))
                    }
                }
            },
            BeforeGcHead(words) => match self.size_of("PyGC_Head")? {
                Some((gc_head, word)) => {
                    Found::At(-(i128::from(gc_head) + i128::from(words) * i128::from(word)))
                }
                None => Found::Absent("no PyGC_Head in the DWARF".to_string()),
            },
            Nowhere(why) => Found::Absent(why.to_string()),
        })
    }
}

fn is_declaration(entry: &gimli::DebuggingInformationEntry<Slice<'_>>) -> bool {
    matches!(
        entry.attr_value(gimli::DW_AT_declaration),
        Some(AttributeValue::Flag(true))
    )
}
