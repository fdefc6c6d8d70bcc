# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The AWX / Automation Controller material (extensions/awx) against the playbooks it runs.

Every survey question must set a variable its playbook really reads (found in the playbook and the task files
it includes, documented in its header), with a type the place it lands accepts: a module option or role
variable it is handed to (plugins/modules/*.py DOCUMENTATION, roles/*/meta/argument_specs.yml), the conversion
filter applied to it (int, float, bool, string) or the type of its default. Variables the playbook reads
without a default must be required questions; choices must be a subset of the choices the landing place
accepts, and defaults must be valid answers. The checker is run on broken surveys too, to show that it fails.
"""

from __future__ import annotations

import ast
import copy
import json
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
AWX = ROOT / 'extensions' / 'awx'
TEMPLATE_NAMES = ['plan', 'migrate', 'defend', 'confine', 'rebase_rollout']

SURVEY_VALUE = {'text': 'str', 'textarea': 'str', 'password': 'str', 'integer': 'int', 'float': 'float',
                'multiplechoice': 'str', 'multiselect': 'list'}
COMPATIBLE = {'str': {'str', 'path', 'raw'}, 'int': {'int', 'float', 'raw'}, 'float': {'float', 'raw'},
              'list': {'list', 'raw'}, 'bool': {'bool', 'raw'}}
CONVERSIONS = {'int': 'int', 'float': 'float', 'bool': 'bool', 'string': 'str'}
QUESTION_KEYS = {'question_name', 'question_description', 'variable', 'type', 'required', 'default', 'choices',
                 'min', 'max', 'new_question'}
TASK_KEYWORDS = {'name', 'vars', 'when', 'loop', 'loop_control', 'register', 'delegate_to', 'run_once', 'args',
                 'tags', 'changed_when', 'failed_when', 'check_mode', 'no_log', 'become', 'environment',
                 'ignore_errors', 'until', 'retries', 'delay', 'notify', 'delegate_facts', 'with_items', 'block',
                 'rescue', 'always', 'listen', 'throttle', 'timeout', 'any_errors_fatal'}
BARE = {'when', 'changed_when', 'failed_when', 'until', 'that'}   # keys whose strings are Jinja expressions
ROLE_INCLUDES = {'ansible.builtin.include_role', 'ansible.builtin.import_role', 'include_role', 'import_role'}
TASK_INCLUDES = {'ansible.builtin.include_tasks', 'ansible.builtin.import_tasks', 'include_tasks', 'import_tasks'}
FILTER = re.compile(r'\s*\|\s*([\w.]+)\s*(\((?:[^()]|\([^()]*\))*\))?')
EXPR = re.compile(r'{{(.*?)}}|{%(.*?)%}', re.S)


# ---------------------------------------------------------------- where the variables are declared

def module_options(fqcn):
    name = fqcn.split('.')[-1]
    path = ROOT / 'plugins' / 'modules' / ('%s.py' % name)
    if not fqcn.startswith('mtd.containers.') or not path.exists():
        return None
    source = path.read_text()
    doc = re.search(r'^DOCUMENTATION = r?"""(.*?)"""', source, re.S | re.M)
    return (yaml.safe_load(doc.group(1)) or {}).get('options') or {} if doc else None


def role_options(role):
    path = ROOT / 'roles' / role.split('.')[-1] / 'meta' / 'argument_specs.yml'
    if not role.startswith('mtd.containers.') or not path.exists():
        return None
    return yaml.safe_load(path.read_text())['argument_specs']['main'].get('options') or {}


def header(playbook):
    lines = []
    for line in playbook.read_text().splitlines()[1:]:
        if not line.startswith('#'):
            break
        lines.append(line)
    return '\n'.join(lines)


# ---------------------------------------------------------------- where the variables are used

def _chain(text):
    """The filters applied to the value at the start of ``text``, also across closing parentheses."""
    filters, pos = [], 0
    while True:
        m = FILTER.match(text, pos)
        if m:
            filters.append((m.group(1).split('.')[-1], (m.group(2) or '')[1:-1]))
            pos = m.end()
            continue
        rest = text[pos:].lstrip()
        if rest.startswith(')'):
            pos = len(text) - len(rest) + 1
            continue
        return filters, text[pos:]


def _usages_in(value, var, landing, whole_only):
    """One dict per expression of the string ``value`` that reads ``var``."""
    found = []
    for m in EXPR.finditer(value):
        expr = (m.group(1) or m.group(2) or '').strip()
        hits = list(re.finditer(r'(?<![\w.\'"])%s(?!\w)' % re.escape(var), expr))
        if not hits:
            continue
        entry = {'filters': [], 'optional': False, 'whole': False, 'landing': landing, 'split': False}
        for hit in hits:
            filters, rest = _chain(expr[hit.end():])
            entry['filters'].extend(filters)
            if any(f == 'default' for f, dummy in filters) or re.match(r'\s+is\s+(not\s+)?defined', rest):
                entry['optional'] = True
            if rest.startswith('.split(') or re.match(r'\s+is\s+string', rest):
                entry['split'] = True
            if hit.start() == 0 and not rest.strip() and value.strip() == m.group(0):
                entry['whole'] = True
        entry['whole'] = entry['whole'] and whole_only
        found.append(entry)
    return found


def _bare(node):
    """A conditional (when, that ...): its strings are expressions without {{ }}."""
    items = node if isinstance(node, list) else [node]
    return ['{{ %s }}' % item if isinstance(item, str) else item for item in items]


def _walk(node, var, landing, out):
    if isinstance(node, str):
        out.extend(_usages_in(node, var, landing, True))
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in BARE:
                _walk(_bare(value), var, None, out)
                continue
            sub = (landing or {}).get('suboptions') if landing is not None and 'type' in landing else landing
            option = sub.get(key) if isinstance(sub, dict) else None
            if isinstance(value, str):
                out.extend(_usages_in(value, var, option, True))
            else:
                _walk(value, var, option, out)
    elif isinstance(node, list):
        for item in node:
            _walk(item, var, None, out)


def _walk_tasks(tasks, var, base, out):
    for task in tasks or []:
        for section in ('block', 'rescue', 'always'):
            _walk_tasks(task.get(section), var, base, out)
        module = next((k for k in task if k not in TASK_KEYWORDS), None)
        args = task.get(module) if module else None
        for key, value in task.items():
            if key in ('block', 'rescue', 'always', module, 'vars'):
                continue
            _walk(_bare(value) if key in BARE else value, var, None, out)
        if module in TASK_INCLUDES:
            name = args if isinstance(args, str) else args.get('file')
            _walk_tasks(yaml.safe_load((base / name).read_text()), var, base, out)
            _walk(task.get('vars'), var, None, out)
        elif module in ROLE_INCLUDES:
            _walk(task.get('vars'), var, role_options(args['name']) or {}, out)
            _walk(args, var, None, out)
        else:
            options = module_options(module) if module else None
            _walk(args, var, options or {} if options is not None else None, out)
            _walk(task.get('vars'), var, None, out)


def usages(playbook, var):
    out = []
    for play in yaml.safe_load(playbook.read_text()):
        for key, value in play.items():
            if key == 'tasks':
                _walk_tasks(value, var, playbook.parent, out)
            elif key == 'hosts':
                out.extend({**u, 'landing': {'type': 'str'}} for u in _usages_in(value, var, None, True))
            else:
                _walk(value, var, None, out)
    return out


def _literal_type(text):
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return None
    if text.strip() in ('true', 'false'):
        return 'bool'
    return {bool: 'bool', int: 'int', float: 'float', str: 'str', list: 'list', dict: 'dict'}.get(type(value))


def declaration(playbook, var):
    """What the playbook accepts for ``var``: {types, choices, required, documented}; None when it never reads it."""
    doc = header(playbook)
    found = usages(playbook, var)
    types, choices = set(), None
    for pattern in re.finditer(r'any (\w+)\* variable of the ([\w.]+) role', doc):
        if var.startswith(pattern.group(1)):
            option = (role_options(pattern.group(2)) or {}).get(var)
            if option:
                found.append({'filters': [('default', '')], 'optional': not option.get('required'),
                              'whole': True, 'landing': option, 'split': False})
    if not found:
        return None
    for u in found:
        conv = [CONVERSIONS[f] for f, dummy in u['filters'] if f in CONVERSIONS]
        landing = u['landing'] or {}
        if conv:
            types.add(conv[-1])
        elif u['whole'] and landing.get('type'):
            types.add(landing['type'])
        for f, args in u['filters']:
            if f == 'default' and _literal_type(args):
                types.add(_literal_type(args))
        if landing.get('choices'):
            allowed = {str(c) for c in landing['choices']}
            choices = allowed if choices is None else choices & allowed
    line = re.search(r'^#\s+%s\s.*$' % re.escape(var), doc, re.M)    # its line in a "Variables" list
    if line and re.search(r'comma-separated string|one string', line.group(0)):
        types.add('str')
    documented = bool(re.search(r'\b%s\b' % re.escape(var), doc))
    return {'types': types, 'choices': choices, 'required': not all(u['optional'] for u in found),
            'documented': documented or any(u['filters'] == [('default', '')] for u in found)}


# ---------------------------------------------------------------- the checker

def _question_errors(q, decl, playbook):
    var, qtype = q['variable'], q['type']
    if decl is None:
        return ['%s is not a variable of %s' % (var, playbook.name)]
    errors = [] if decl['documented'] else ['%s is not documented in the header of %s' % (var, playbook.name)]
    choices = [str(c) for c in q.get('choices') or []]
    value = SURVEY_VALUE[qtype]
    if qtype == 'multiplechoice' and sorted(choices) == ['false', 'true'] and 'bool' in decl['types']:
        value = 'bool'
    if not decl['types']:
        errors.append('%s: %s gives no type (no default, conversion or typed landing place)' % (var, playbook.name))
    elif not COMPATIBLE[value] & decl['types']:
        errors.append('%s: a %s question gives a %s, %s accepts %s' % (var, qtype, value, playbook.name,
                                                                       sorted(decl['types'])))
    if decl['required'] and not q.get('required'):
        errors.append('%s: %s reads it without a default, so the question must be required' % (var, playbook.name))
    if qtype.startswith('multi'):
        if not choices:
            errors.append('%s: a %s question needs choices' % (var, qtype))
        if decl['choices'] is not None and not set(choices) <= decl['choices']:
            refused = sorted(set(choices) - decl['choices'])
            errors.append('%s: choices %s are not all accepted (%s)' % (var, refused, sorted(decl['choices'])))
    elif choices:
        errors.append('%s: only multiplechoice and multiselect questions have choices' % var)
    errors.extend(_default_errors(q, choices))
    return errors


def _default_errors(q, choices):
    var, qtype, default = q['variable'], q['type'], q.get('default')
    if default is None or default == '' and not q.get('required'):
        return []
    if qtype == 'multiplechoice' and str(default) not in choices:
        return ['%s: default %r is not one of the choices' % (var, default)]
    if qtype == 'multiselect' and not set(default.split('\n') if isinstance(default, str) else default) <= set(choices):
        return ['%s: default %r is not a subset of the choices' % (var, default)]
    if qtype == 'integer' and (not isinstance(default, int) or isinstance(default, bool)):
        return ['%s: default %r is not an integer' % (var, default)]
    if qtype == 'float' and not isinstance(default, (int, float)):
        return ['%s: default %r is not a number' % (var, default)]
    measure = default if qtype in ('integer', 'float') else len(str(default))
    if qtype in ('integer', 'float', 'text', 'textarea', 'password') and (
            measure < q.get('min', measure) or measure > q.get('max', measure)):
        return ['%s: default %r is outside min/max' % (var, default)]
    return []


def survey_errors(survey, playbook, extra_vars=None):
    """Everything wrong with ``survey`` (an AWX survey_spec) for ``playbook``; [] when it fits."""
    errors = []
    for key in ('name', 'description', 'spec'):
        if key not in survey:
            errors.append('the survey has no %s' % key)
    variables = [q.get('variable') for q in survey.get('spec', [])]
    errors.extend('%s is asked twice' % v for v in sorted(set(v for v in variables if variables.count(v) > 1)))
    for q in survey.get('spec', []):
        unknown = set(q) - QUESTION_KEYS
        missing = {'question_name', 'variable', 'type', 'required'} - set(q)
        if unknown or missing or q.get('type') not in SURVEY_VALUE:
            errors.append('question %r: unknown keys %s, missing %s, type %r' % (
                q.get('variable'), sorted(unknown), sorted(missing), q.get('type')))
            continue
        errors.extend(_question_errors(q, declaration(playbook, q['variable']), playbook))
    for var in sorted(required_variables(playbook) - set(variables) - set(extra_vars or {})):
        errors.append('%s reads %s without a default, but the survey does not ask for it' % (playbook.name, var))
    return errors


def required_variables(playbook):
    """The documented variables (header lines ``#   name  ...``) the playbook reads without a default."""
    names = set(re.findall(r'^#\s+(mtd_\w+)\b', header(playbook), re.M))
    names |= set(re.findall(r'\b(mtd_\w+) \(', header(playbook)))
    return {n for n in names if (declaration(playbook, n) or {}).get('required')}


# ---------------------------------------------------------------- the material

def load_awx(extra=None):
    """templates.yml, credentials.yml and project.yml rendered the way the configuration play sees them."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.template import Templar

    init_plugin_loader()
    loader = DataLoader()
    loader.set_basedir(str(AWX))
    variables = dict(loader.load_from_file('settings.yml', trusted_as_template=True))
    variables.update(extra or {})
    templar = Templar(loader=loader, variables=variables)
    return {name: templar.template(loader.load_from_file(name + '.yml', trusted_as_template=True))
            for name in ('templates', 'credentials', 'project')}


SECRETS = {'mtd_awx_ssh_private_key': 'KEY', 'mtd_awx_ee_registry_username': 'u', 'mtd_awx_ee_registry_password': 'p',
           'mtd_awx_registry_username': 'u', 'mtd_awx_registry_password': 'p'}


@pytest.fixture(scope='module')
def awx():
    return load_awx(SECRETS)


@pytest.fixture(scope='module')
def templates(awx):
    return {t['playbook'].split('/')[-1][:-4]: t for t in awx['templates']['controller_templates']}


def test_one_template_per_playbook(templates):
    assert sorted(templates) == sorted(TEMPLATE_NAMES)
    for name, t in templates.items():
        assert (ROOT / t['playbook']).is_file(), t['playbook']
        assert t['survey_enabled'] is True and t['survey_spec']['spec'], name
        assert t['credentials'] == ['mtd.containers SSH'], name
        assert t['project'] == 'mtd.containers' and t['execution_environment'] == 'mtd.containers EE', name


def test_template_fields_are_controller_templates_fields(templates):
    known = {'name', 'description', 'organization', 'project', 'playbook', 'inventory', 'execution_environment',
             'credentials', 'job_type', 'ask_variables_on_launch', 'ask_limit_on_launch', 'allow_simultaneous',
             'survey_enabled', 'survey_spec', 'extra_vars'}
    for t in templates.values():
        assert set(t) <= known, set(t) - known
        assert t['job_type'] in ('run', 'check')


def test_surveys_are_the_json_files(templates):
    for name, t in templates.items():
        assert t['survey_spec'] == json.loads((AWX / 'surveys' / ('%s.json' % name)).read_text())


@pytest.mark.parametrize('name', TEMPLATE_NAMES)
def test_survey_fits_its_playbook(templates, name):
    t = templates[name]
    assert survey_errors(t['survey_spec'], ROOT / t['playbook'], t.get('extra_vars')) == []


def test_required_variables_are_found():
    assert required_variables(ROOT / 'playbooks' / 'migrate.yml') == {'mtd_container', 'mtd_source'}
    assert required_variables(ROOT / 'playbooks' / 'confine.yml') == {'mtd_confine_hosts', 'mtd_confine_containers'}
    assert required_variables(ROOT / 'playbooks' / 'rebase_rollout.yml') == {'mtd_rollout_image'}
    assert required_variables(ROOT / 'playbooks' / 'plan.yml') == set()


def test_declarations_come_from_the_landing_place():
    migrate, plan = ROOT / 'playbooks' / 'migrate.yml', ROOT / 'playbooks' / 'plan.yml'
    assert declaration(migrate, 'mtd_container')['types'] == {'str'}              # role argument spec
    assert declaration(migrate, 'mtd_keep_source')['types'] >= {'bool'}           # | bool
    assert declaration(migrate, 'migrate_memory')['choices'] == {'copy', 'lazy'}  # "any migrate_* variable"
    assert declaration(plan, 'mtd_plan_granularity')['choices'] == {'id', 'id_version', 'kernel'}  # module option
    assert 'int' in declaration(ROOT / 'playbooks' / 'defend.yml', 'mtd_defend_max')['types']     # (... ) | int
    assert declaration(plan, 'mtd_no_such_variable') is None


def _broken(templates, name, change):
    survey = copy.deepcopy(templates[name]['survey_spec'])
    change(survey['spec'])
    return survey_errors(survey, ROOT / templates[name]['playbook'])


def _question(spec, var):
    return next(q for q in spec if q['variable'] == var)


def test_checker_finds_a_variable_the_playbook_does_not_read(templates):
    errors = _broken(templates, 'plan', lambda s: _question(s, 'mtd_plan_hosts').update(variable='mtd_plan_host'))
    assert 'mtd_plan_host is not a variable of plan.yml' in errors


def test_checker_finds_a_wrong_type(templates):
    def change(spec):
        _question(spec, 'mtd_defend_max').update(type='text', default='one', min=0, max=10)
    assert any('mtd_defend_max: a text question gives a str' in e for e in _broken(templates, 'defend', change))


def test_checker_finds_an_invalid_choice_and_default(templates):
    def change(spec):
        _question(spec, 'mtd_plan_granularity').update(choices=['id', 'distro'], default='kernel')
    errors = _broken(templates, 'plan', change)
    assert any("choices ['distro'] are not all accepted" in e for e in errors), errors
    assert any('default' in e and 'kernel' in e for e in errors), errors


def test_checker_finds_a_missing_or_optional_required_question(templates):
    errors = _broken(templates, 'migrate', lambda s: s.remove(_question(s, 'mtd_source')))
    assert 'migrate.yml reads mtd_source without a default, but the survey does not ask for it' in errors
    errors = _broken(templates, 'migrate', lambda s: _question(s, 'mtd_container').update(required=False))
    assert any('mtd_container: migrate.yml reads it without a default' in e for e in errors), errors


def test_credentials_and_project(awx):
    creds = {c['name']: c for c in awx['credentials']['controller_credentials']}
    assert creds['mtd.containers SSH']['credential_type'] == 'Machine'
    assert creds['mtd.containers EE registry']['credential_type'] == 'Container Registry'
    assert creds['mtd.containers EE registry']['inputs']['host'] == 'registry.example.com'
    ctype = awx['credentials']['controller_credential_types'][0]
    assert creds['mtd.containers registry']['credential_type'] == ctype['name']
    # the injector keeps its own template for the controller (!unsafe), and names what the modules read
    assert ctype['injectors']['env'] == {'MTD_REGISTRY_USERNAME': '{{ username }}', 'MTD_REGISTRY_PASSWORD': '{{ password }}'}
    fragment = (ROOT / 'plugins' / 'doc_fragments' / 'registry.py').read_text()
    assert 'E(MTD_REGISTRY_USERNAME)' in fragment and 'E(MTD_REGISTRY_PASSWORD)' in fragment
    projects = awx['project']['controller_projects']
    ees = awx['project']['controller_execution_environments']
    assert projects[0]['name'] == 'mtd.containers' and projects[0]['default_environment'] == ees[0]['name']
    assert ees[0]['credential'] == 'mtd.containers EE registry'


def test_project_installs_this_collection():
    requirements = yaml.safe_load((ROOT / 'collections' / 'requirements.yml').read_text())
    galaxy = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
    names = [c['name'] for c in requirements['collections']]
    assert names == ['%s.%s' % (galaxy['namespace'], galaxy['name'])]
    from ansible.galaxy.dependency_resolution.versioning import meets_requirements
    assert meets_requirements(galaxy['version'], requirements['collections'][0]['version'])
