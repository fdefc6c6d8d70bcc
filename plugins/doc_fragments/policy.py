# -*- coding: utf-8 -*-
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

# The migration policy, documented once; the argument spec is module_utils/_policy.py (POLICY_SPEC).


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  policy:
    description:
      - What a migrated container may be. M(mtd.containers.checkpoint) checks the container's configuration
        against it before anything is frozen (in check mode too); M(mtd.containers.restore) checks the
        configuration it is given again on the target, before anything is pulled, created or started,
        because a source host that is attacked can make the configuration say anything.
      - Each item refuses by default; widen only what a container really needs. A refusal names every item
        the configuration asks for beyond the policy.
      - Always refused, whatever the policy - C(Privileged) (a privileged container is root on its host;
        give it capabilities and devices instead); joining another container's namespaces
        (C(container:NAME) modes); network modes other than C(none) and C(host); a runtime other than runc;
        mounts other than named volumes, binds and tmpfs; HostConfig keys that a captured configuration
        never holds; bind mounts of C(/), C(/proc), C(/sys) (cgroupfs included), C(/dev), C(/boot),
        C(/etc/docker), the engine's socket, state and data directories (C(/run/docker), C(/var/lib/docker),
        containerd's, and the socket and data root this module talks to) - or of any directory containing one
        of them.
    type: dict
    suboptions:
      host_namespaces:
        description:
          - Host namespaces the container may share (C(--pid host), C(--ipc host), C(--uts host),
            C(--network host), C(--cgroupns host)).
          - The host's cgroup namespace is Docker's default on cgroup v1 hosts and is accepted there.
        type: list
        elements: str
        choices: [pid, ipc, uts, network, cgroup]
        default: []
      devices:
        description: Host devices (C(PathOnHost) of C(--device)) the container may have.
        type: list
        elements: str
        default: []
      unconfined:
        description:
          - Confinement the container may run without - V(seccomp) (C(seccomp=unconfined), or a profile whose
            default action allows every call), V(apparmor) (C(apparmor=unconfined)), V(selinux)
            (C(label=disable)), V(systempaths) (C(systempaths=unconfined)).
        type: list
        elements: str
        choices: [seccomp, apparmor, selinux, systempaths]
        default: []
      capabilities:
        description:
          - The capabilities the container may hold - Docker's default set plus C(CapAdd) minus C(CapDrop)
            must be a subset. Names with or without C(CAP_); V(ALL) allows every capability.
          - The default is Docker's default set.
        type: list
        elements: str
        default: [AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE, NET_RAW,
                  SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT]
      bind_prefixes:
        description:
          - Host directories below which bind mounts are allowed (each is a directory, C(/srv/app) does not
            allow C(/srv/application)). Empty allows no bind mount. The paths always refused (see above) stay
            refused below any prefix, V(/) included.
        type: list
        elements: str
        default: []
"""
